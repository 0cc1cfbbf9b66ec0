"""Throughput and latency under load: the bot against the floor, in one run on one machine.

Starts, side by side on free ports:

* ``bot``        — the bot under ``deploy/gunicorn.conf.py`` with a real Redis server
                   (``--redis-url``, its own key prefix, deleted afterwards);
* ``floor``      — ``bench/floor.py`` (Flask + wechatpy: check the signature, parse, echo) under the
                   SAME ``deploy/gunicorn.conf.py`` settings;
* ``floor-sync`` — the same floor under plain ``gunicorn -k sync`` (no config file).

then runs wrk against each in turn for several alternating rounds. wrk (Debian's package,
installed here if missing) signs nothing itself: every round gets a fresh pool of signed
query strings (明文模式: the signature covers token, timestamp and nonce only) and a Lua
script builds each body with a unique MsgId, one of 5,000 openids and a question from the
dev set. Prints req/s, p50/p99/max and errors per round and the medians, the bot's ratio
to the better floor, RSS per worker and cold start (process start → first answered message).

This machine's speed moves within minutes (a shared host: steal time), so each round
also prints the CPU each server spent per request: its gunicorn master and workers,
and for the bot the Redis server's too (``INFO cpu``, so a busy shared server counts
others' work). CPU per request moves far less than req/s when the host slows down.

    .venv/bin/python bench/load.py                         # 3 rounds × 10 s, 16 connections
    .venv/bin/python bench/load.py --rounds 5 --duration 15 --connections 32
    GUNICORN_WORKER_CLASS=gthread WEB_CONCURRENCY=2 .venv/bin/python bench/load.py   # another worker model
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKEN = "bench-token"
OPENIDS = 5000


def dev_questions() -> list[str]:
    """The dev set's questions (in-domain, out-of-domain, small talk): the load's message mix."""
    data = yaml.safe_load((ROOT.parent / "shared" / "eval" / "dev-questions.yaml").read_text(encoding="utf-8"))
    return [item["q"] for group in data.values() for item in group]


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is not installed: installing Debian's package", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True)
    return shutil.which("wrk") or sys.exit("wrk could not be installed")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def signed_query(timestamp: str | None = None) -> str:
    from wechatsim import signature

    timestamp = timestamp or str(int(time.time()))
    nonce = str(secrets.randbelow(10**10))
    return f"/wechat?timestamp={timestamp}&nonce={nonce}&signature={signature(TOKEN, timestamp, nonce)}"


def lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def wrk_script(folder: Path, questions: list[str], run_id: str) -> Path:
    """A wrk script for one round: fresh signatures, unique MsgIds, many students."""
    queries = [signed_query() for _ in range(64)]
    now = int(time.time())
    script = f"""
local questions = {{{", ".join(lua_string(q) for q in questions)}}}
local queries = {{{", ".join(lua_string(q) for q in queries)}}}
local headers = {{["Content-Type"] = "text/xml"}}
local counter = 0
local next_id = 1
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end
function request()
  counter = counter + 1
  local openid = "o-load-" .. ((counter * 7 + tid * 13) % {OPENIDS})
  local body = "<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[" .. openid ..
    "]]></FromUserName><CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[" ..
    questions[(counter % #questions) + 1] .. "]]></Content><MsgId>{run_id}" .. tid .. string.format("%09d", counter) ..
    "</MsgId></xml>"
  return wrk.format("POST", queries[(counter % #queries) + 1], headers, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('JSON {{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""
    path = folder / f"load-{run_id}.lua"
    path.write_text(script, encoding="utf-8")
    return path


@dataclass
class Target:
    name: str
    command: list[str]
    env: dict[str, str]
    port: int
    log: Path
    process: subprocess.Popen | None = None
    cold_start: float | None = None
    results: list[dict] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start and time process start → first answered message."""
        from wechatsim import message_xml, text_message

        started = time.monotonic()
        self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        deadline = started + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"{self.name} exited:\n{self.log.read_text(errors='replace')[-3000:]}")
            try:
                body = message_xml(text_message("学信网怎么注册", openid="o-cold-start")).encode()
                response = requests.post(self.url + signed_query(), data=body, timeout=5)
                if response.status_code == 200 and b"<Content>" in response.content:
                    self.cold_start = time.monotonic() - started
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.01)
        sys.exit(f"{self.name} did not answer in 60 s:\n{self.log.read_text(errors='replace')[-3000:]}")

    def workers(self) -> list[int]:
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(child) for child in children]

    def rss_mib(self) -> list[float]:
        sizes = []
        for pid in self.workers():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]) / 1024)
        return sizes

    def cpu_seconds(self) -> float:
        """User + system CPU of the master and its workers so far (threads included)."""
        total = 0
        for pid in [self.process.pid, *self.workers()]:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # a worker that just exited (max_requests): its CPU is lost to the figure
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def redis_cpu_seconds(client) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run_wrk(wrk: str, target: Target, script: Path, duration: int, connections: int, threads: int) -> dict:
    output = subprocess.run(
        [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--timeout", "5s", "-s", str(script), target.url + "/wechat"],
        capture_output=True, text=True, check=True,
    ).stdout
    line = next(line for line in output.splitlines() if line.startswith("JSON "))
    result = json.loads(line[5:])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--sync-workers", type=int, default=2 * (os.cpu_count() or 1) + 1, help="workers of the plain sync floor")
    parser.add_argument("--only", choices=["bot", "floor", "floor-sync"], action="append", help="measure only these")
    args = parser.parse_args()

    import state

    wrk = ensure_wrk()
    redis_client = state.connect(args.redis_url, 2.0)
    if not redis_client.ping():
        sys.exit(f"no Redis server answers at {args.redis_url}")
    questions = dev_questions()
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "REDIS_", "FLASK_", "PROMETHEUS_"))}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bot_env = {**base_env, "WECHAT_TOKEN": TOKEN, "REDIS_URL": args.redis_url, "REDIS_PREFIX": prefix,
                   "INSTANCE_PATH": str(folder / "instance"), "SECRET_KEY": secrets.token_hex(16)}
        conf = [gunicorn, "-c", "deploy/gunicorn.conf.py"]
        targets = [
            Target("bot", conf, {**bot_env, "PORT": str(port := free_port())}, port, folder / "bot.log"),
            Target("floor", [*conf, "bench.floor:app"], {**bot_env, "PORT": str(port := free_port())}, port, folder / "floor.log"),
            Target("floor-sync", [gunicorn, "-k", "sync", "-w", str(args.sync_workers), "-b", f"127.0.0.1:{(port := free_port())}",
                                  "--access-logfile", "-", "--no-control-socket", "bench.floor:app"], {**bot_env}, port, folder / "floor-sync.log"),
        ]
        targets = [t for t in targets if not args.only or t.name in args.only]
        try:
            for target in targets:
                target.start()
                run_wrk(wrk, target, wrk_script(folder, questions, "1" + str(secrets.randbelow(10**5)).zfill(5)), 2, args.connections, args.threads)
            for round_no in range(1, args.rounds + 1):
                for target in targets:
                    script = wrk_script(folder, questions, f"{round_no}{secrets.randbelow(10**5):05d}")
                    cpu, redis_cpu = target.cpu_seconds(), redis_cpu_seconds(redis_client)
                    result = run_wrk(wrk, target, script, args.duration, args.connections, args.threads)
                    result["cpu_ms"] = (target.cpu_seconds() - cpu) / result["requests"] * 1000
                    result["redis_cpu_ms"] = (redis_cpu_seconds(redis_client) - redis_cpu) / result["requests"] * 1000
                    target.results.append(result)
                    redis_part = f" + Redis {result['redis_cpu_ms']:.2f}" if target.name == "bot" else ""
                    print(f"round {round_no} {target.name:10s} {result['rps']:8.0f} req/s  p50 {result['p50_us'] / 1000:6.2f} ms  "
                          f"p99 {result['p99_us'] / 1000:6.2f} ms  max {result['max_us'] / 1000:7.2f} ms  errors {result['errors']}  "
                          f"CPU {result['cpu_ms']:.2f}{redis_part} ms/req", flush=True)
            rss = {t.name: t.rss_mib() for t in targets}
            stats_key = f"{prefix}stats:{time.strftime('%Y%m%d')}"
            recorded = {k.decode(): int(v) for k, v in redis_client.hgetall(stats_key).items() if k.startswith(b"outcome:")}
        finally:
            for target in targets:
                target.stop()
            keys = list(redis_client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                redis_client.delete(*keys)

    settings = " ".join(f"{k}={os.environ[k]}" for k in ("GUNICORN_WORKER_CLASS", "WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_KEEPALIVE", "GUNICORN_WORKER_CONNECTIONS") if k in os.environ) or "as shipped"
    print(f"\n{args.rounds} rounds × {args.duration} s, {args.connections} connections, wrk -t{args.threads}; "
          f"deploy/gunicorn.conf.py worker model: {settings}; Redis {args.redis_url}")
    medians = {}
    for target in targets:
        rows = target.results
        medians[target.name] = statistics.median(r["rps"] for r in rows)
        print(f"{target.name:10s} median {medians[target.name]:8.0f} req/s  p50 {statistics.median(r['p50_us'] for r in rows) / 1000:6.2f} ms  "
              f"p99 {statistics.median(r['p99_us'] for r in rows) / 1000:6.2f} ms (worst {max(r['p99_us'] for r in rows) / 1000:.2f})  "
              f"max {max(r['max_us'] for r in rows) / 1000:7.2f} ms  errors {sum(r['errors'] for r in rows)}  "
              f"RSS/worker {', '.join(f'{m:.0f}' for m in rss[target.name])} MiB  cold start {target.cold_start:.2f} s  "
              f"CPU {statistics.median(r['cpu_ms'] for r in rows):.2f} ms/req")
    floors = [medians[name] for name in ("floor", "floor-sync") if name in medians]
    if "bot" in medians and floors:
        cpu = {t.name: statistics.median(r["cpu_ms"] + (r["redis_cpu_ms"] if t.name == "bot" else 0) for r in t.results) for t in targets}
        cheapest = min(cpu[name] for name in ("floor", "floor-sync") if name in cpu)
        print(f"bot / better floor: {medians['bot'] / max(floors):.2f}× the throughput; "
              f"the floor's CPU per request is {cheapest / cpu['bot']:.2f}× the bot's (Redis server included)")
    if "bot" in medians:
        sent = sum(r["requests"] for r in targets[0].results)
        print(f"bot outcomes recorded in Redis statistics (all rounds + warm-up): {recorded}; wrk counted {sent} in the rounds")


if __name__ == "__main__":
    main()
