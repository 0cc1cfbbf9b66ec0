"""Redis outages, start-up and several workers: the real app over HTTP, real Redis servers.

These tests start their own app processes and their own Redis servers (they stop
them on purpose), so they never touch the shared test Redis.
"""
from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path


import pytest
import redis
import requests

import state
from conftest import ROOT, TOKEN, drop_keys, free_port, start_app, eventually
from embedded_redis import EmbeddedRedis
from knowledge.base import KnowledgeBase
from wechatsim import WeChatServer, text_message

WITHIN_WECHAT_DEADLINE = 4.5  # seconds: WeChat drops a reply after 5



def ask(server: WeChatServer, kb: KnowledgeBase, entry_id: str, **fields: object) -> None:
    message = text_message(kb.entries[entry_id].question, openid=f"o-{uuid.uuid4().hex[:8]}")
    reply = server.send({**message, **fields}, mode="safe", timeout=WITHIN_WECHAT_DEADLINE)
    assert reply.status == 200 and reply.content == kb.pages(entry_id)[0]


def test_embedded_redis_stopped_mid_run_degrades_then_recovers(tmp_path: Path, kb: KnowledgeBase) -> None:
    app = start_app(tmp_path)
    try:
        server = app.wechat()
        ask(server, kb, "xueli-certification")
        assert app.health()["redis"] == "up"
        # no retries: a retried SHUTDOWN would stop the server the app has just restarted
        embedded = state.connect(f"unix://{tmp_path / 'instance' / 'redis.sock'}", 2.0)
        old_pid = embedded.info()["process_id"]
        try:
            embedded.shutdown(nosave=True)
        except redis.ConnectionError:
            pass
        for entry_id in ("account-forgot-password", "chsi-what", "sms-code-not-received"):
            ask(server, kb, entry_id)
        assert eventually(lambda: app.health()["redis"] == "up"), "the app should restart its embedded Redis"
        assert embedded.info()["process_id"] != old_pid
        retry = text_message(kb.entries["chsi-contact"].question, openid="o-after-outage")
        first = server.send(retry, mode="safe")
        assert server.send(retry, mode="safe").body == first.body
        assert "redis unavailable" in app.log_text()
        assert "Traceback" not in app.log_text()
    finally:
        app.stop()


def test_external_redis_going_away_and_coming_back(tmp_path: Path, kb: KnowledgeBase) -> None:
    redis_server = EmbeddedRedis(tmp_path / "redis").start()
    app = start_app(tmp_path, REDIS_URL=redis_server.url)
    try:
        server = app.wechat()
        ask(server, kb, "xueli-certification")
        redis_server.stop()
        for entry_id in ("account-forgot-password", "account-phone-taken"):
            ask(server, kb, entry_id)
        assert eventually(lambda: app.health() == {"status": "ok", "redis": "down", "mode": "stateless"})
        redis_server.start()
        assert eventually(lambda: app.health()["mode"] == "stateful")
        ask(server, kb, "account-id-taken")
        assert app.store().stats(dt.date.today()).get("topic:account-id-taken") == 1
    finally:
        app.stop()
        redis_server.stop()


def test_a_hung_redis_does_not_hold_replies_past_the_deadline(tmp_path: Path, kb: KnowledgeBase) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    app = start_app(tmp_path, REDIS_URL=f"redis://127.0.0.1:{listener.getsockname()[1]}")
    try:
        server = app.wechat()
        for entry_id in ("xueli-certification", "account-forgot-password", "chsi-contact"):
            ask(server, kb, entry_id)
        assert app.health()["mode"] == "stateless"
    finally:
        app.stop()
        listener.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_python_app_without_token_prints_a_development_token_and_cleans_up(tmp_path: Path) -> None:
    app = start_app(tmp_path, WECHAT_TOKEN="", WECHAT_APP_ID="", WECHAT_ENCODING_AES_KEY="")
    try:
        printed = [line for line in app.log_text().splitlines() if "development token" in line]
        assert printed, app.log_text()
        token = printed[0].rsplit(" ", 1)[1]
        assert WeChatServer(f"{app.base}/wechat", token).handshake("ok").text == "ok"
        redis_pid = redis.Redis(unix_socket_path=str(tmp_path / "instance" / "redis.sock")).info()["process_id"]
    finally:
        app.stop()
    assert app.process.returncode == 0
    assert eventually(lambda: not _alive(redis_pid)), "stopping the app must stop its embedded Redis"


def _gunicorn(tmp_path: Path, **env: str) -> subprocess.Popen:
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "REDIS_", "FLASK_"))},
        "INSTANCE_PATH": str(tmp_path / "instance"),
        **env,
    }
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "deploy/gunicorn.conf.py"],
        cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def test_gunicorn_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    process = _gunicorn(tmp_path, PORT=str(free_port()))
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert b"WECHAT_TOKEN is not set" in output


def test_gunicorn_workers_share_one_redis_for_retries(tmp_path: Path, redis_url: str, kb: KnowledgeBase) -> None:
    port = free_port()
    prefix = f"test:{uuid.uuid4().hex[:10]}:"
    process = _gunicorn(tmp_path, PORT=str(port), WECHAT_TOKEN=TOKEN, REDIS_URL=redis_url, REDIS_PREFIX=prefix, WEB_CONCURRENCY="3", GUNICORN_THREADS="1")
    try:
        base = f"http://127.0.0.1:{port}"
        assert eventually(lambda: _answers(f"{base}/healthz"), timeout=60), process.stdout.read1().decode()
        server = WeChatServer(f"{base}/wechat", TOKEN)
        message = text_message(kb.entries["xueli-certification"].question, openid="o-gunicorn")
        bodies = {server.send(message).body for _ in range(6)}
        assert len(bodies) == 1
        stats = state.Store(client=state.connect(redis_url, 1.0), prefix=prefix).stats(dt.date.today())
        assert stats.get("topic:xueli-certification") == 1
    finally:
        process.terminate()
        process.wait(timeout=20)
        drop_keys(redis_url, prefix)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False
