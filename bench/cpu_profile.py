"""Where one message's CPU goes: the whole webhook path in-process, under cProfile (or pyinstrument).

Builds the real app (``create_app``) against a Redis server, calls its WSGI
entry point with N signed plaintext messages from the dev questions (the WSGI
environments are built beforehand, so only the app's own work is measured, as
under gunicorn minus its HTTP parsing) and prints the CPU per message and the
functions that cost most.

    .venv/bin/python bench/cpu_profile.py                       # cProfile, 2000 messages
    .venv/bin/python bench/cpu_profile.py --pyinstrument -n 1000
    .venv/bin/python bench/cpu_profile.py --steps               # CPU of each webhook step, no profiler
"""
from __future__ import annotations

import argparse
import collections
import cProfile
import io
import pstats
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from werkzeug.test import EnvironBuilder  # noqa: E402

import state  # noqa: E402
from wechatsim import message_xml, signature, text_message  # noqa: E402

from load import dev_questions  # noqa: E402

TOKEN = "bench-token"


def timed_steps() -> "collections.Counter[str]":
    """Wrap each step of ``webhook.receive`` so that it adds its user + system CPU to a counter.

    A profiler's own cost per call distorts small steps; this costs two ``time.process_time`` calls a step.
    """
    import webhook

    spent: collections.Counter[str] = collections.Counter()

    def wrap(owner: object, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def timed(*args: object, **kwargs: object) -> object:
            started = time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[label] += time.process_time() - started

        setattr(owner, name, timed)

    for name, label in [("verify_signature", "signature"), ("check_fresh", "replay window"), ("parse", "parse (XML, decrypt)"),
                        ("_decide", "decide"), ("_render", "reply XML"), ("_log", "log line + metrics"), ("_plain", "response")]:
        wrap(webhook, name, label)
    wrap(state.Store, "begin", "Redis: begin")
    wrap(state.Store, "commit", "Redis: commit")
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--messages", type=int, default=2000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--pyinstrument", action="store_true")
    parser.add_argument("--steps", action="store_true", help="user + system CPU of each step of the webhook instead of a profile")
    parser.add_argument("--log-level", default="INFO", help="WARNING leaves out the per-message log line")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="cumulative", help="pstats order: cumulative, tottime, …")
    args = parser.parse_args()

    from app import create_app

    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    app = create_app({"WECHAT_TOKEN": TOKEN, "REDIS_URL": args.redis_url, "REDIS_PREFIX": prefix,
                      "WECHAT_ENCODING_AES_KEY": "", "RATE_LIMIT": "1000000", "LOG_LEVEL": args.log_level})
    questions = dev_questions()
    timestamp, nonce = str(int(time.time())), "12345"
    query = {"timestamp": timestamp, "nonce": nonce, "signature": signature(TOKEN, timestamp, nonce)}
    bodies = [
        EnvironBuilder(path="/wechat", method="POST", query_string=query, content_type="text/xml",
                       data=message_xml(text_message(questions[i % len(questions)], openid=f"o-prof-{i % 5000}")).encode()).get_environ()
        for i in range(2 * args.messages + 200)
    ]
    statuses: list[str] = []

    def start_response(status: str, headers: list, exc_info: object = None) -> None:
        statuses.append(status)

    def post(environ: dict) -> None:
        b"".join(app.wsgi_app(environ, start_response))
        assert statuses.pop() == "200 OK"

    steps = timed_steps() if args.steps else None
    for body in bodies[:200]:
        post(body)
    work, unprofiled = bodies[200:200 + args.messages], bodies[200 + args.messages:]
    try:
        if steps is not None:
            steps.clear()
            started = time.process_time()
            for body in work:
                post(body)
            total = time.process_time() - started
            print(f"CPU per message: {total / len(work) * 1e6:.0f} µs (user + system), by step:")
            for name, seconds in steps.most_common():
                print(f"  {name:24s} {seconds / len(work) * 1e6:6.0f} µs")
            print(f"  {'the rest (Flask, werkzeug)':24s} {(total - sum(steps.values())) / len(work) * 1e6:6.0f} µs")
            return
        if args.pyinstrument:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002)
            started = time.process_time()
            profiler.start()
            for body in work:
                post(body)
            profiler.stop()
            cpu = time.process_time() - started
            print(profiler.output_text(unicode=True, color=False, show_all=False))
        else:
            profile = cProfile.Profile()
            started = time.process_time()
            profile.enable()
            for body in work:
                post(body)
            profile.disable()
            cpu = time.process_time() - started
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats(args.sort).print_stats(args.top)
            print(out.getvalue())
        print(f"messages: {len(work)}  CPU per message (under the profiler): {cpu / len(work) * 1000:.3f} ms")
        # The machine is shared: the least CPU over five slices is the app's own cost, the rest is interference.
        slices = []
        step = max(1, len(unprofiled) // 5)
        for start in range(0, step * 5, step):
            started = time.process_time()
            for body in unprofiled[start:start + step]:
                post(body)
            slices.append((time.process_time() - started) / step * 1000)
        print(f"CPU per message without the profiler: {min(slices):.3f} ms (least of five slices; all: "
              f"{', '.join(f'{s:.2f}' for s in slices)})")
    finally:
        client_redis = state.connect(args.redis_url, 1.0)
        keys = list(client_redis.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client_redis.delete(*keys)


if __name__ == "__main__":
    main()
