"""How long a staff edit takes to reach students: save → every app process answers with it.

    .venv/bin/python bench/reload.py [--processes 2] [--edits 5]

Starts the bot (``python app.py``) several times against one embedded Redis,
saves an edit through ``LiveKnowledge`` as the console does, and polls each
process's webhook until it replies with the edit. Prints the save time (the
draft build that validates it) and, per edit, the time until the first and the
last process served it; and the webhook latency while they rebuilt, against a baseline of the
same traffic with nothing to rebuild.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import config as settings  # noqa: E402
import state  # noqa: E402
from embedded_redis import EmbeddedRedis  # noqa: E402
from knowledge.live import LiveKnowledge, entry_from_yaml, entry_to_yaml  # noqa: E402
from wechatsim import text_message  # noqa: E402
from wechatsim.live import start_app  # noqa: E402

PATH = "entries/xueli-certification.yaml"  # written for every audience: the bot answers it without asking who the student is


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--edits", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="xueji-reload-"))
    server = EmbeddedRedis(tmp / "redis").start()
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    apps = []
    try:
        for n in range(args.processes):
            (tmp / str(n)).mkdir()
            apps.append(start_app(tmp / str(n), REDIS_URL=server.url, REDIS_PREFIX=prefix))
        store = state.Store(client=state.connect(server.url, 1.0), prefix=prefix)
        live = LiveKnowledge(ROOT / "knowledge", store, settings.load({"WECHAT_TOKEN": "bench"}, env={}))
        wechat = [app.wechat() for app in apps]
        saves, firsts, lasts, latencies = [], [], [], []
        stop = threading.Event()

        def background() -> None:
            question = entry_from_yaml(live.read(PATH)[0])["question"]
            while not stop.is_set():
                for client in wechat:
                    started = time.perf_counter()
                    client.send(text_message(question, openid=f"o-{uuid.uuid4().hex[:8]}"), mode="safe")
                    latencies.append(time.perf_counter() - started)
                stop.wait(0.05)

        asker = threading.Thread(target=background, daemon=True)
        asker.start()
        time.sleep(3)  # a baseline: the same traffic with nothing to rebuild
        baseline = list(latencies)
        del latencies[:]
        for _ in range(args.edits):
            text, rev = live.read(PATH)
            entry = entry_from_yaml(text)
            tag = uuid.uuid4().hex[:8]
            entry["answer"] = f"请登录学信网查询。{tag}"
            started = time.perf_counter()
            live.save({PATH: entry_to_yaml(entry)}, "bench", {PATH: rev})
            saved = time.perf_counter()
            saves.append(saved - started)
            pending = set(range(len(apps)))
            seen = []
            while pending and time.perf_counter() - saved < 30:
                for n in sorted(pending):
                    reply = wechat[n].send(text_message(entry["question"], openid=f"o-{uuid.uuid4().hex[:8]}"), mode="safe")
                    if tag in (reply.content or ""):
                        pending.discard(n)
                        seen.append(time.perf_counter() - saved)
                time.sleep(0.02)
            if pending:
                print(f"edit {tag}: {len(pending)} process(es) never served it within 30 s")
                return 1
            firsts.append(min(seen))
            lasts.append(max(seen))
        stop.set()
        asker.join(10)
    finally:
        for app in apps:
            app.stop()
        server.stop()
    def ms(xs: list[float]) -> str:
        p95 = statistics.quantiles(xs, n=20, method="inclusive")[-1] if len(xs) > 1 else xs[0]
        return f"median {statistics.median(xs) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {max(xs) * 1000:.0f} ms"

    print(f"{args.processes} processes, {args.edits} edits")
    print(f"save (validate + build the draft): {ms(saves)}")
    print(f"save → first process serves it:    {ms(firsts)}")
    print(f"save → every process serves it:    {ms(lasts)}")
    print(f"webhook latency, nothing to rebuild ({len(baseline)} messages): {ms(baseline)}")
    print(f"webhook latency while edits go live ({len(latencies)} messages): {ms(latencies)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
