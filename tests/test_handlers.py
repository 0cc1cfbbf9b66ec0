"""Handlers with the real knowledge base and matcher: follow-ups, dispatch and the error path."""
from __future__ import annotations

import logging
import uuid

import pytest
from flask import Flask

import handlers
from app import create_app
from conftest import TOKEN
from handlers.text import respond
from knowledge.base import KnowledgeBase
from knowledge.matcher import Matcher
from wechatsim import WeChatServer, message_xml, text_message


@pytest.fixture(scope="module")
def matcher(kb: KnowledgeBase) -> Matcher:
    return Matcher(kb)


def ctx(kb: KnowledgeBase, matcher: Matcher, **session: object) -> handlers.Context:
    return handlers.Context(kb=kb, matcher=matcher, session=dict(session))


def _clarifying_question(kb: KnowledgeBase, matcher: Matcher) -> str:
    """A question the matcher is unsure about: a shared word of two entries' questions."""
    probes = ["学历", "学籍", "查不到", "毕业证", "身份证号", "学信网", "改名", "证明"]
    for probe in probes:
        if matcher.match(probe).action == "clarify":
            return probe
    pytest.fail(f"none of {probes} is ambiguous enough to clarify")


def test_a_number_picks_from_the_clarify_list(kb: KnowledgeBase, matcher: Matcher) -> None:
    question = _clarifying_question(kb, matcher)
    asked = respond(ctx(kb, matcher), question)
    listed = asked.effects.session["list"]
    candidates = listed["items"]
    assert asked.effects.outcome == "clarify" and listed["kind"] == "clarify" and 2 <= len(candidates) <= 4
    for n, candidate in enumerate(candidates, 1):
        assert kb.entries[candidate].question in asked.reply
        typed = str(n) if n % 2 else chr(ord("０") + n)  # full-width digits from a Chinese keyboard
        picked = respond(ctx(kb, matcher, list=listed, audience="undergrad"), typed)
        assert picked.effects.topic == candidate and picked.reply == kb.paginate(kb.answer(candidate, "undergrad"))[0]


def test_a_number_outside_the_list_is_not_an_answer(kb: KnowledgeBase, matcher: Matcher) -> None:
    listed = {"kind": "clarify", "items": ["diploma-lost", "xueli-query"], "q": "证书"}
    outcome = respond(ctx(kb, matcher, list=listed), "7")
    assert outcome.effects.topic is None and "1 到 2" in outcome.reply
    assert outcome.effects.session["list"] == listed


def test_more_serves_the_remaining_pages_then_says_so(kb: KnowledgeBase, matcher: Matcher) -> None:
    first = respond(ctx(kb, matcher, pages=["第二页", "第三页"]), " 更多。")
    assert first.reply == "第二页" and first.effects.session["pages"] == ["第三页"]
    last = respond(ctx(kb, matcher, **first.effects.session), "继续")
    assert last.reply == "第三页" and "pages" not in last.effects.session
    done = respond(ctx(kb, matcher, **last.effects.session), "更多")
    assert done.reply == kb.text("no_more")


def test_audience_named_earlier_picks_the_variant_later(kb: KnowledgeBase, matcher: Matcher) -> None:
    entry = next(e for e in kb.entries.values() if any(v.audience == "graduate" for v in e.variants))
    plain = respond(ctx(kb, matcher), entry.question)
    remembered = respond(ctx(kb, matcher, audience="graduate"), entry.question)
    assert plain.effects.outcome == "audience" and plain.effects.session["pending"]["entry"] == entry.id
    assert remembered.effects.topic == entry.id
    assert remembered.reply == kb.pages(entry.id, "graduate")[0] != plain.reply


def test_fallback_records_the_question_for_staff(kb: KnowledgeBase, matcher: Matcher) -> None:
    outcome = respond(ctx(kb, matcher), "食堂今天中午有什么菜")
    assert outcome.effects.outcome == "fallback" and kb.text("fallback_recorded").strip("，") in outcome.reply
    assert outcome.effects.unanswered == "食堂今天中午有什么菜"


@pytest.fixture
def app(tmp_path, redis_url: str, prefix: str) -> Flask:
    return create_app({"WECHAT_TOKEN": TOKEN, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "INSTANCE_PATH": str(tmp_path)})


def test_a_failing_handler_becomes_the_apology_not_a_500(app: Flask, kb: KnowledgeBase, caplog: pytest.LogCaptureFixture) -> None:
    @handlers.handles("explode")
    def explode(message: object, context: handlers.Context) -> handlers.Outcome:
        raise RuntimeError("boom")

    server = WeChatServer("http://unused/wechat", TOKEN)
    fields = {**text_message("x", openid=f"o-{uuid.uuid4().hex[:6]}"), "MsgType": "explode"}
    try:
        with caplog.at_level(logging.ERROR):
            response = app.test_client().post("/wechat", query_string=server.query(), data=message_xml(fields))
    finally:
        handlers._HANDLERS.pop(("explode", None))
    assert response.status_code == 200
    assert kb.text("error") in response.get_data(as_text=True)
    assert any(record.exc_info and "boom" in str(record.exc_info[1]) for record in caplog.records)
