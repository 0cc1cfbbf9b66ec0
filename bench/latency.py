"""Per-message latency through the full HTTP path: signed (and AES-encrypted) WeChat XML in, reply out.

Starts the real bot (``python app.py``) on a free port, sends N text messages
one after another (each a different student and question, drawn from the
knowledge base's similar questions), and prints median / p90 / p99 / max of
the round trip as WeChat's server would see it.

    .venv/bin/python bench/latency.py                 # 1000 messages, safe mode, embedded Redis
    .venv/bin/python bench/latency.py --mode plain -n 2000 --redis-url redis://127.0.0.1:6379/13
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import state  # noqa: E402
from knowledge.base import load  # noqa: E402
from wechatsim import text_message  # noqa: E402
from wechatsim.live import start_app  # noqa: E402


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--messages", type=int, default=1000)
    parser.add_argument("--mode", choices=["plain", "compat", "safe"], default="safe")
    parser.add_argument("--redis-url", default="", help="a Redis server (default: the embedded one)")
    args = parser.parse_args()

    kb = load()
    questions = [q for entry in kb.entries.values() for q in (entry.question, *entry.similar)]
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    with tempfile.TemporaryDirectory() as tmp:
        env = {"REDIS_PREFIX": prefix}
        if args.redis_url:
            env["REDIS_URL"] = args.redis_url
        app = start_app(Path(tmp), **env)
        try:
            server = app.wechat(safe=args.mode != "plain")
            for question in questions[:20]:
                server.send(text_message(question, openid="o-warmup"), mode=args.mode)
            latencies: list[float] = []
            outcomes: dict[int, int] = {}
            for i in range(args.messages):
                message = text_message(questions[i % len(questions)], openid=f"o-bench-{i % 200}")
                started = time.perf_counter()
                reply = server.send(message, mode=args.mode)
                latencies.append((time.perf_counter() - started) * 1000)
                outcomes[reply.status] = outcomes.get(reply.status, 0) + 1
            redis_state = app.health()["redis"]
        finally:
            app.stop()
            if args.redis_url:
                client = state.connect(args.redis_url, 1.0)
                keys = list(client.scan_iter(match=f"{prefix}*"))
                if keys:
                    client.delete(*keys)

    print(f"messages: {len(latencies)}  mode: {args.mode}  redis: {'server ' + args.redis_url if args.redis_url else 'embedded'} ({redis_state})")
    print(f"HTTP status: {outcomes}")
    print(
        "round trip ms: "
        f"median {statistics.median(latencies):.2f}  p90 {percentile(latencies, 0.90):.2f}  "
        f"p99 {percentile(latencies, 0.99):.2f}  max {max(latencies):.2f}"
    )


if __name__ == "__main__":
    main()
