"""Where one message's CPU goes: the whole webhook path in-process, under cProfile (or pyinstrument).

Builds the real app (``create_app``) against a Redis server, posts N signed
plaintext messages from the dev questions through Flask's test client (no
sockets between "WeChat" and the app, so only the app's own work is measured)
and prints the CPU per message and the functions that cost most.

    .venv/bin/python bench/cpu_profile.py                       # cProfile, 2000 messages
    .venv/bin/python bench/cpu_profile.py --pyinstrument -n 1000
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import state  # noqa: E402
from wechatsim import message_xml, signature, text_message  # noqa: E402

from load import dev_questions  # noqa: E402

TOKEN = "bench-token"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--messages", type=int, default=2000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--pyinstrument", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    from app import create_app

    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    app = create_app({"WECHAT_TOKEN": TOKEN, "REDIS_URL": args.redis_url, "REDIS_PREFIX": prefix,
                      "WECHAT_ENCODING_AES_KEY": "", "RATE_LIMIT": "1000000"})
    client = app.test_client()
    questions = dev_questions()
    bodies = [message_xml(text_message(questions[i % len(questions)], openid=f"o-prof-{i % 5000}")).encode()
              for i in range(2 * args.messages + 200)]

    def post(body: bytes) -> None:
        timestamp, nonce = str(int(time.time())), "12345"
        query = {"timestamp": timestamp, "nonce": nonce, "signature": signature(TOKEN, timestamp, nonce)}
        response = client.post("/wechat", query_string=query, data=body)
        assert response.status_code == 200, response.data

    for body in bodies[:200]:
        post(body)
    work, unprofiled = bodies[200:200 + args.messages], bodies[200 + args.messages:]
    try:
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
            pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(args.top)
            print(out.getvalue())
        print(f"messages: {len(work)}  CPU per message (under the profiler): {cpu / len(work) * 1000:.3f} ms")
        started = time.process_time()
        for body in unprofiled:
            post(body)
        plain = time.process_time() - started
        print(f"CPU per message without the profiler: {plain / len(unprofiled) * 1000:.3f} ms")
    finally:
        client_redis = state.connect(args.redis_url, 1.0)
        keys = list(client_redis.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client_redis.delete(*keys)


if __name__ == "__main__":
    main()
