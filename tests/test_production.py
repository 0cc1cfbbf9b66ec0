"""Production behaviour of the real app over HTTP: replay and flood protection, a stalled Redis,
metrics across gunicorn workers, and two app processes sharing one Redis.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest
import requests

import bot
from conftest import ROOT, LiveApp, drop_keys, for_everyone, introduce, start_app, eventually
from embedded_redis import EmbeddedRedis
from knowledge.base import KnowledgeBase
from wechatsim import WeChatServer, new_msg_id, text_message

WITHIN_WECHAT_DEADLINE = 4.5



def openid() -> str:
    return f"o-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def strict_app(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[LiveApp]:
    """安全模式 as configured in production: plaintext refused, a small rate limit to test it quickly."""
    app = start_app(tmp_path_factory.mktemp("strict"), REDIS_URL=redis_url, REDIS_PREFIX=f"test:{uuid.uuid4().hex[:10]}:",
                    ALLOW_PLAINTEXT="0", RATE_LIMIT="5")
    yield app
    app.stop()
    drop_keys(redis_url, app.prefix)


# --- replay ------------------------------------------------------------------------------------

@pytest.mark.parametrize("skew", [-30 * 86400, -301, 301, 3600])
def test_posts_signed_with_an_old_or_future_timestamp_are_refused(strict_app: LiveApp, kb: KnowledgeBase, skew: int) -> None:
    server = strict_app.wechat()
    query = server.query(timestamp=str(int(time.time()) + skew))
    reply = server.send(text_message(kb.entries["diploma-lost"].question, openid=openid()), mode="safe", params=query)
    assert reply.status == 403 and b"server time" in reply.body
    assert eventually(lambda: '"refused": 403' in strict_app.log_text() and "server time" in strict_app.log_text())


def test_a_timestamp_within_the_window_is_answered(strict_app: LiveApp, kb: KnowledgeBase) -> None:
    server = strict_app.wechat()
    student = openid()
    introduce(server, kb, student)
    query = server.query(timestamp=str(int(time.time()) - 200))
    reply = server.send(text_message(kb.entries["diploma-lost"].question, openid=student), mode="safe", params=query)
    assert reply.status == 200 and reply.content == kb.pages("diploma-lost")[0]


def test_plaintext_is_refused_when_safe_mode_is_configured(strict_app: LiveApp, kb: KnowledgeBase) -> None:
    server = strict_app.wechat()
    refused = server.send(text_message(kb.entries["diploma-lost"].question, openid=openid()), mode="plain")
    assert refused.status == 403 and b"ALLOW_PLAINTEXT" in refused.body
    assert server.send(text_message(kb.entries["diploma-lost"].question, openid=openid()), mode="compat").status == 200


def test_an_injected_nonce_never_reaches_the_reply(strict_app: LiveApp, kb: KnowledgeBase) -> None:
    server = strict_app.wechat()
    evil = "]]></Nonce><Evil>1</Evil><Nonce><![CDATA["
    timestamp = str(int(time.time()))
    from wechatsim import signature

    query = {"timestamp": timestamp, "nonce": evil, "signature": signature(server.token, timestamp, evil)}
    response = server.post_raw("<xml/>", query)
    assert response.status_code == 400 and b"<Evil>" not in response.content


# --- flood -------------------------------------------------------------------------------------

def test_a_flooding_student_gets_one_slow_down_then_success_and_is_not_counted(strict_app: LiveApp, kb: KnowledgeBase) -> None:
    server = strict_app.wechat()
    student = openid()
    store = strict_app.store()
    out_of_domain = "食堂几点开门" + uuid.uuid4().hex[:6]

    def counted() -> tuple[dict[str, int], int]:
        return store.stats(dt.date.today()), len(store.unanswered(dt.date.today()))

    def grown(before: tuple[dict[str, int], int], after: tuple[dict[str, int], int]) -> tuple[dict[str, int], int]:
        keys = set(before[0]) | set(after[0])
        return {k: after[0].get(k, 0) - before[0].get(k, 0) for k in keys if after[0].get(k, 0) != before[0].get(k, 0)}, after[1] - before[1]

    # What any student gets for these five messages (the conversation goes on: a second fallback hands over).
    start = counted()
    reference = openid()
    expected = [server.send(text_message(out_of_domain, openid=reference), mode="safe").content for _ in range(5)]
    by_reference = grown(start, counted())
    before = counted()
    replies = [server.send(text_message(out_of_domain, openid=student), mode="safe") for _ in range(8)]
    assert all(r.status == 200 for r in replies)
    assert [r.content for r in replies[:5]] == expected
    assert replies[5].content == kb.text("slow_down")
    assert [r.body for r in replies[6:]] == [b"success", b"success"]
    by_flood = grown(before, counted())
    assert by_flood == by_reference
    assert by_flood[0].get("outcome:fallback", 0) >= 1 and by_flood[1] == 5
    assert sum(v for k, v in by_flood[0].items() if k.startswith("outcome:")) == 5
    assert "outcome:rate_limited" not in store.stats(dt.date.today())
    # Another student is not held back by this one.
    (entry,) = for_everyone(kb, "xueli-certification")
    other = server.send(text_message(kb.entries[entry].question, openid=openid()), mode="safe")
    assert other.content == kb.pages(entry)[0]


def test_a_retry_of_the_slow_down_message_gets_the_same_reply(strict_app: LiveApp, kb: KnowledgeBase) -> None:
    server = strict_app.wechat()
    student = openid()
    for _ in range(5):
        server.send(text_message("你好", openid=student), mode="safe")
    sixth = text_message("你好", openid=student)
    first = server.send(sixth, mode="safe")
    assert first.content == kb.text("slow_down")
    assert server.send(sixth, mode="safe").body == first.body


def test_unfollowing_is_never_rate_limited(strict_app: LiveApp) -> None:
    server = strict_app.wechat()
    student = openid()
    for _ in range(7):
        server.send(text_message("你好", openid=student), mode="safe")
    store = strict_app.store()
    assert store.client.exists(store.key("rate", student))
    from wechatsim import event_message

    assert server.send(event_message("unsubscribe", openid=student), mode="safe").body == b"success"
    assert not store.client.exists(store.key("rate", student), store.key("session", student), store.key("audience", student))


# --- a stalled Redis ---------------------------------------------------------------------------

def test_a_retry_after_a_redis_stall_gets_an_answer(tmp_path: Path, kb: KnowledgeBase) -> None:
    """The claim sent into a stalled Redis reaches it late: it must not leave a PENDING for the retry."""
    redis_server = EmbeddedRedis(tmp_path / "redis").start()
    app = start_app(tmp_path, REDIS_URL=redis_server.url, REDIS_TIMEOUT="0.25")
    pid = redis_server._process.pid
    try:
        server = app.wechat()
        # Entries for everyone: while Redis stalls nobody's audience can be read.
        warm_entry, entry = for_everyone(kb, "xueli-certification", "chsi-contact")
        warm = server.send(text_message(kb.entries[warm_entry].question, openid=openid()), mode="safe")
        assert warm.content == kb.pages(warm_entry)[0]
        message = text_message(kb.entries[entry].question, openid=openid())
        os.kill(pid, signal.SIGSTOP)
        try:
            first = server.send(message, mode="safe", timeout=WITHIN_WECHAT_DEADLINE)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert first.content == kb.pages(entry)[0]
        assert eventually(lambda: app.health()["mode"] == "stateful")
        retry = server.send(message, mode="safe", timeout=WITHIN_WECHAT_DEADLINE)
        assert retry.body != b"success" and retry.content == kb.pages(entry)[0]
        assert "Traceback" not in app.log_text()
    finally:
        app.stop()
        redis_server.stop()


# --- metrics across gunicorn workers -----------------------------------------------------------

def _total(metrics_text: str, name: str) -> float:
    return sum(float(value) for value in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", metrics_text, re.MULTILINE))


def test_metrics_add_up_over_two_gunicorn_workers(tmp_path: Path, redis_url: str, kb: KnowledgeBase) -> None:
    metrics_dir = tmp_path / "metrics"
    app = start_app(tmp_path, server="gunicorn", WEB_CONCURRENCY="2", REDIS_URL=redis_url, REDIS_PREFIX=f"test:{uuid.uuid4().hex[:10]}:",
                    PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    try:
        entries = for_everyone(kb, "xueli-certification", "chsi-contact", "school-contact", "account-forgot-password")
        questions = [kb.entries[e].question for e in entries]
        server = app.wechat()

        def ask(i: int) -> int:
            return WeChatServer(server.url, server.token, server.aes_key, server.app_id).send(
                text_message(questions[i % 4], openid=openid()), mode="safe").status

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(ask, range(40))) == {200}
        assert len(list(metrics_dir.glob("counter_*.db"))) >= 2, "both workers should have answered"
        for _ in range(6):  # each scrape may land on either worker: every one must see the sum
            text = requests.get(f"{app.base}/metrics", timeout=5).text
            assert _total(text, "xueji_messages_total") == 40
            assert _total(text, "xueji_reply_seconds_count") == 40
            assert 'xueji_messages_total{outcome="answer",type="text"} 40.0' in text
            assert "xueji_redis_errors_total 0.0" in text
    finally:
        app.stop()
        drop_keys(redis_url, app.prefix)


@pytest.mark.parametrize("access_log", ["-", ""], ids=["access-log-on", "access-log-default"])
def test_gunicorn_access_log_holds_no_query_string(tmp_path: Path, redis_url: str, kb: KnowledgeBase, access_log: str) -> None:
    """Asked for (``GUNICORN_ACCESSLOG=-``), the access log leaves out the query string; by default nginx keeps it."""
    app = start_app(tmp_path, server="gunicorn", WEB_CONCURRENCY="1", REDIS_URL=redis_url, REDIS_PREFIX=f"test:{uuid.uuid4().hex[:10]}:",
                    GUNICORN_ACCESSLOG=access_log)
    try:
        server = app.wechat()
        student = openid()
        query = {**server.query(), "openid": student}
        reply = server.send(text_message(kb.entries["diploma-lost"].question, openid=student), mode="safe", params=query)
        assert reply.status == 200
        assert eventually(lambda: '"logger": "xueji.webhook"' in app.log_text()), "the per-message JSON line is written under gunicorn too"
        if access_log:
            assert eventually(lambda: '"POST /wechat HTTP/1.1" 200' in app.log_text())
        log = app.log_text()
        assert student not in log and query["signature"] not in log and "nonce=" not in log
        if not access_log:
            assert "POST /wechat" not in log
    finally:
        app.stop()
        drop_keys(redis_url, app.prefix)


# --- two app processes, one Redis --------------------------------------------------------------

def _clarifying_question(kb: KnowledgeBase) -> str:
    _, matcher = bot.knowledge({"KNOWLEDGE_DIR": str(ROOT / "knowledge")})
    for probe in ["学历", "学籍", "查不到", "毕业证", "身份证号", "学信网", "改名", "证明"]:
        if matcher.match(probe).action == "clarify":
            return probe
    pytest.fail("no probe is ambiguous enough to clarify")


def test_one_students_conversation_across_two_app_processes(tmp_path_factory: pytest.TempPathFactory, redis_url: str, kb: KnowledgeBase) -> None:
    prefix = f"test:{uuid.uuid4().hex[:10]}:"
    first = start_app(tmp_path_factory.mktemp("a"), REDIS_URL=redis_url, REDIS_PREFIX=prefix)
    second = start_app(tmp_path_factory.mktemp("b"), REDIS_URL=redis_url, REDIS_PREFIX=prefix)
    try:
        a, b = first.wechat(), second.wechat()
        student = openid()
        introduce(b, kb, student)
        asked = a.send(text_message(_clarifying_question(kb), openid=student), mode="safe")
        candidates = re.findall(r"^\d+\. (.+)$", asked.content, re.MULTILINE)
        assert len(candidates) >= 2, asked.content
        chosen = next(e for e in kb.entries if kb.entries[e].question == candidates[1])
        picked = b.send(text_message("2", openid=student), mode="safe")
        assert picked.content == kb.paginate(kb.answer(chosen, "undergrad"))[0]

        message = text_message(kb.entries["xueli-certification"].question, openid=student, msg_id=new_msg_id())
        on_a = a.send(message, mode="safe")
        on_b = b.send(message, mode="safe")
        assert on_a.status == on_b.status == 200 and on_b.body == on_a.body
        stats = first.store().stats(dt.date.today())
        assert stats.get("topic:xueli-certification") == 1
    finally:
        first.stop()
        second.stop()
        drop_keys(redis_url, prefix)
