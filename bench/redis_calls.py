"""The client-side CPU of the two per-message Redis calls, through redis-py's pool and through the store's own connections.

``Store.begin`` and ``Store.commit`` each run one Lua script. This runs the
same scripts with the same keys and arguments both ways, alternating in one
run: ``Script.__call__`` (redis-py's pool: a socket poll and observability
hooks for every command) and ``Store._run`` (an idle connection of the store's
own, as the webhook does). Prints the least CPU per call over the rounds and
the ratio; the Redis server's own time is not in these figures.

    .venv/bin/python bench/redis_calls.py
    .venv/bin/python bench/redis_calls.py --redis-url redis://127.0.0.1:6379/14 --calls 5000 --rounds 7
"""
from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import state  # noqa: E402


def cpu_per_call(fn: Callable[[int], object], calls: int) -> float:
    started = time.process_time()
    for i in range(calls):
        fn(i)
    return (time.process_time() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    store = state.Store(state.connect(args.redis_url, 1.0), prefix=prefix)
    begin_keys = [store.key("dedupe", "m"), store.key("session", "o"), store.key("audience", "o"), store.key("rate", "o")]
    commit_ops = state._Commands()
    commit_ops.add("SET", store.key("dedupe", "m"), b"<xml>" + b"reply " * 60 + b"</xml>", "EX", state.DEDUPE_TTL)
    commit_ops.add("SET", store.key("session", "o"), '{"pages": ["第二页"], "last": "account-register"}', "EX", 1800)
    stats = store.key("stats", "20260901")
    commit_ops.add("HINCRBY", stats, "outcome:answer", 1)
    commit_ops.add("HINCRBY", stats, "topic:account-register", 1)
    commit_ops.add("EXPIRE", stats, state.STATS_TTL)

    def begin_args(i: int) -> tuple[list[str], list[object]]:
        keys = [f"{begin_keys[0]}{i}", *begin_keys[1:]]
        return keys, [state.PENDING, 8000, int(time.time() * 1000) + 10_000, state.RATE_WINDOW, 2000]

    ways: dict[str, dict[str, Callable[[int], object]]] = {
        "redis-py Script": {
            "begin": lambda i: store._begin(*begin_args(i)),
            "commit": lambda i: store._commit(commit_ops.keys, commit_ops.words),
        },
        "Store._run": {
            "begin": lambda i: store._run(store._begin, *begin_args(i)),
            "commit": lambda i: store._run(store._commit, commit_ops.keys, commit_ops.words),
        },
    }
    best = {(way, call): float("inf") for way in ways for call in ("begin", "commit")}
    try:
        for way in ways.values():  # warm both paths (script cache, connections) before measuring
            for fn in way.values():
                cpu_per_call(fn, 200)
        for _ in range(args.rounds):
            for way, calls in ways.items():
                for call, fn in calls.items():
                    best[way, call] = min(best[way, call], cpu_per_call(fn, args.calls))
    finally:
        client = state.connect(args.redis_url, 1.0)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)

    print(f"client CPU per call, least of {args.rounds} rounds × {args.calls} calls, alternating; Redis {args.redis_url}")
    for call in ("begin", "commit"):
        pool, own = best["redis-py Script", call], best["Store._run", call]
        print(f"{call:7s} redis-py Script {pool:6.1f} µs   Store._run {own:6.1f} µs   ratio {pool / own:.2f}×")
    total_pool = best["redis-py Script", "begin"] + best["redis-py Script", "commit"]
    total_own = best["Store._run", "begin"] + best["Store._run", "commit"]
    print(f"per message (begin + commit): {total_pool:.1f} µs against {total_own:.1f} µs, {total_pool - total_own:.1f} µs less")


if __name__ == "__main__":
    main()
