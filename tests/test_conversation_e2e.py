"""Scripted conversations end to end: the real app over HTTP, signed and encrypted XML, real Redis.

Each student is a fresh openid, so the conversations share the app without
sharing state; what the app stored is checked through its own Redis keys.
"""
from __future__ import annotations

import datetime as dt
import shutil
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import yaml

import state

from conftest import ROOT, LiveApp, drop_keys, start_app, eventually
from embedded_redis import EmbeddedRedis
from knowledge.base import KnowledgeBase, load
from knowledge.matcher import Matcher
from wechatsim import Reply, WeChatServer, event_message, text_message

LONG_ENTRY = "xueli-certification"



class Student:
    """One student's phone: every message is a new signed (safe mode) delivery from the same openid."""

    def __init__(self, app: LiveApp):
        self.app = app
        self.server: WeChatServer = app.wechat()
        self.openid = f"o-{uuid.uuid4().hex[:12]}"

    def send(self, fields: dict) -> Reply:
        reply = self.server.send(fields, mode="safe")
        assert reply.status == 200, reply.body
        return reply

    def says(self, text: str) -> str | None:
        return self.send(text_message(text, openid=self.openid)).content

    def taps(self, key: str, create_time: int | None = None) -> str | None:
        return self.send(event_message("CLICK", openid=self.openid, EventKey=key, create_time=create_time)).content

    def keys(self) -> list[str]:
        client = self.app.store().client
        return [k.decode() for k in client.scan_iter(match=f"{self.app.prefix}*:{self.openid}")]


@pytest.fixture(scope="module")
def matcher(kb: KnowledgeBase) -> Matcher:
    return Matcher(kb)


def clarifying(matcher: Matcher) -> tuple[str, list[str]]:
    for probe in ["学历", "学籍", "毕业证", "查不到", "身份证号", "证明"]:
        match = matcher.match(probe)
        if match.action == "clarify":
            return probe, list(match.candidates)
    pytest.fail("no probe clarifies")


def stats(app: LiveApp) -> dict[str, int]:
    return app.store().stats(dt.date.today())


def test_clarify_then_second_then_answer(live_app: LiveApp, kb: KnowledgeBase, matcher: Matcher) -> None:
    student = Student(live_app)
    assert student.says("我是本科生")
    question, candidates = clarifying(matcher)
    listed = student.says(question)
    assert all(f"{n}. {kb.entries[c].question}" in listed for n, c in enumerate(candidates, 1))
    assert student.says("第二个") == kb.paginate(kb.answer(candidates[1], "undergrad"))[0]


def test_clarify_then_out_of_range_lists_again_then_new_question(live_app: LiveApp, kb: KnowledgeBase, matcher: Matcher) -> None:
    student = Student(live_app)
    question, candidates = clarifying(matcher)
    student.says(question)
    again = student.says(str(len(candidates) + 1))
    assert f"1 到 {len(candidates)}" in again and all(kb.entries[c].question in again for c in candidates)
    before = live_app.store().unanswered(dt.date.today())
    assert student.says(kb.entries["chsi-what"].question) == kb.pages("chsi-what")[0]
    after = live_app.store().unanswered(dt.date.today())
    assert after[0] == question and len(after) == len(before) + 1
    assert str(len(candidates) + 1) not in after


def test_welcome_then_a_number(live_app: LiveApp, kb: KnowledgeBase) -> None:
    student = Student(live_app)
    welcome = student.send(event_message("subscribe", openid=student.openid)).content
    assert welcome.startswith(kb.text("welcome")) and "回复「人工」联系老师" in welcome
    topics = kb.conversation.welcome_topics
    assert student.says("第3个").startswith(kb.text("audience_question"))
    assert student.says("1") == kb.pages(topics[2], "undergrad")[0]
    again = Student(live_app)
    again.says("我是研究生")
    again.send(event_message("subscribe", openid=again.openid))
    assert again.says("5") == kb.pages(topics[4], "graduate")[0]


def test_audience_asked_answered_remembered_overridden_and_reset(live_app: LiveApp, kb: KnowledgeBase) -> None:
    student = Student(live_app)
    asked = student.says(kb.entries["diploma-lost"].question)
    assert asked.startswith(kb.text("audience_question"))
    assert student.says("3") == kb.pages("diploma-lost", "ouc")[0]
    assert live_app.store().session(student.openid)["audience"] == "ouc"
    assert student.says(kb.entries["xueji-not-found"].question) == kb.pages("xueji-not-found", "ouc")[0]
    assert student.says("研究生的毕业证丢了怎么办") == kb.pages("diploma-lost", "graduate")[0]
    assert live_app.store().session(student.openid)["audience"] == "ouc"
    assert kb.label("undergrad") in student.says("我是本科生")
    assert student.says(kb.entries["diploma-lost"].question) == kb.pages("diploma-lost", "undergrad")[0]
    student.says("重新选择身份")
    assert "audience" not in live_app.store().session(student.openid)
    assert student.says(kb.entries["diploma-lost"].question).startswith(kb.text("audience_question"))


def test_each_student_gets_their_own_office_for_another_audiences_procedure(live_app: LiveApp, kb: KnowledgeBase) -> None:
    undergrad, ouc = Student(live_app), Student(live_app)
    undergrad.says("我是本科生")
    ouc.says("我在国开读书")
    to_undergrad = undergrad.says(kb.entries["enlistment-form-stamp"].question)
    to_ouc = ouc.says(kb.entries["military-enlistment"].question)
    assert to_undergrad.startswith(kb.text("other_audience", "undergrad", written_for=kb.label("ouc")))
    assert to_ouc.startswith(kb.text("other_audience", "ouc", written_for=kb.label("undergrad")))


def test_feedback_is_counted_once_under_retries_and_is_not_unanswered(live_app: LiveApp, kb: KnowledgeBase) -> None:
    student = Student(live_app)
    student.says(kb.entries["xueli-certification"].question)
    before = stats(live_app).get("feedback:xueli-certification", 0)
    message = text_message("没用", openid=student.openid)
    first = student.send(message)
    assert all(student.send(message).body == first.body for _ in range(2))
    assert stats(live_app).get("feedback:xueli-certification", 0) == before + 1
    assert "没用" not in live_app.store().unanswered(dt.date.today())
    assert "「人工」" in first.content


def test_two_students_interleaved_never_mix(live_app: LiveApp, kb: KnowledgeBase, matcher: Matcher) -> None:
    a, b = Student(live_app), Student(live_app)
    question, candidates = clarifying(matcher)
    a.says("我是研究生")
    a.says(question)
    b.says(kb.entries["diploma-lost"].question)
    assert b.says("1") == kb.pages("diploma-lost", "undergrad")[0]
    assert a.says("1") == kb.paginate(kb.answer(candidates[0], "graduate"))[0]
    assert live_app.store().session(a.openid)["audience"] == "graduate"
    assert live_app.store().session(b.openid)["audience"] == "undergrad"


def test_two_taps_in_one_second_are_two_answers(live_app: LiveApp, kb: KnowledgeBase) -> None:
    student = Student(live_app)
    now = int(time.time())
    first = student.taps("MENU_CHSI_CONTACT", create_time=now)
    second = student.taps("MENU_XUELI_CERT", create_time=now)
    assert first == kb.pages("chsi-contact")[0] and second == kb.pages("xueli-certification")[0]
    assert student.taps("MENU_CHSI_CONTACT", create_time=now) == first  # a retry of the first tap


def test_menu_taps_on_an_entry_and_on_a_group(live_app: LiveApp, kb: KnowledgeBase) -> None:
    student = Student(live_app)
    student.says("我是研究生")
    assert student.taps("MENU_XUELI_QUERY") == kb.pages("xueli-query", "graduate")[0]
    button = next(b for top in kb.menu.button for b in top.sub_button if b.group)
    entries = kb.conversation.groups[button.group].entries
    listed = student.taps(button.key)
    assert all(f"{n}. {kb.entries[e].question}" in listed for n, e in enumerate(entries, 1))
    assert student.says("②") == kb.paginate(kb.answer(entries[1], "graduate"))[0]


def test_human_contacts_mode_and_unfollow_deletes_every_key(live_app: LiveApp, kb: KnowledgeBase) -> None:
    student = Student(live_app)
    student.says("我是研究生")
    assert kb.contact("graduate") in student.says("转人工")
    student.says(kb.entries["xueli-certification"].question)
    assert {k.split(":")[-2] for k in student.keys()} == set(state.STUDENT_KEYS)  # session, audience, rate
    before = stats(live_app)
    assert student.send(event_message("unsubscribe", openid=student.openid)).body == b"success"
    assert student.keys() == []
    assert stats(live_app).get("outcome:unsubscribe", 0) == before.get("outcome:unsubscribe", 0) + 1
    assert stats(live_app).get("topic:xueli-certification", 0) >= 1


def test_voice_goes_through_the_same_conversation(live_app: LiveApp, kb: KnowledgeBase, matcher: Matcher) -> None:
    student = Student(live_app)
    student.says("我是本科生")
    question, candidates = clarifying(matcher)

    def speak(text: str) -> str:
        return student.send({**text_message("", openid=student.openid), "MsgType": "voice", "MediaId": "m", "Format": "amr",
                             "Recognition": text}).content

    assert kb.entries[candidates[0]].question in speak(question)
    assert speak("第一个") == kb.paginate(kb.answer(candidates[0], "undergrad"))[0]


# --- apps of their own: 多客服, paging, a short TTL, Redis going away -------------------------

@pytest.fixture(scope="module")
def kf_app(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[LiveApp]:
    app = start_app(tmp_path_factory.mktemp("kf"), REDIS_URL=redis_url, REDIS_PREFIX=f"test:{uuid.uuid4().hex[:10]}:", HUMAN_HANDOFF="kf")
    yield app
    app.stop()
    drop_keys(redis_url, app.prefix)


def test_kf_mode_transfers_every_message_until_end_human(kf_app: LiveApp, kb: KnowledgeBase) -> None:
    student = Student(kf_app)
    assert student.says(kb.entries["chsi-what"].question) == kb.pages("chsi-what")[0]
    for text in ("转人工", "毕业证丢了怎么办", "2", "更多"):
        reply = student.send(text_message(text, openid=student.openid))
        assert reply.fields["MsgType"] == "transfer_customer_service", text
        assert reply.fields["ToUserName"] == student.openid
    assert student.says("结束人工") == kb.text("human_ended")
    assert student.says(kb.entries["chsi-what"].question) == kb.pages("chsi-what")[0]
    student.says("食堂今天中午有什么菜")
    assert student.send(text_message("宿舍几点关门", openid=student.openid)).fields["MsgType"] == "transfer_customer_service"


@pytest.fixture(scope="module")
def paged(tmp_path_factory: pytest.TempPathFactory, redis_url: str, kb: KnowledgeBase) -> Iterator[tuple[LiveApp, KnowledgeBase]]:
    folder = tmp_path_factory.mktemp("knowledge") / "knowledge"
    shutil.copytree(ROOT / "knowledge", folder)
    entry_file = folder / "entries" / f"{LONG_ENTRY}.yaml"
    data = yaml.safe_load(entry_file.read_text(encoding="utf-8"))
    data["entry"]["answer"] = "\n\n".join([data["entry"]["answer"], *[e.answer for e in kb.entries.values() if e.id != LONG_ENTRY][:6]])
    entry_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    app = start_app(tmp_path_factory.mktemp("paged"), REDIS_URL=redis_url, REDIS_PREFIX=f"test:{uuid.uuid4().hex[:10]}:", KNOWLEDGE_DIR=str(folder))
    yield app, load(folder)
    app.stop()
    drop_keys(redis_url, app.prefix)


def test_paging_to_the_end_numbers_pages_and_a_new_question_resets(paged: tuple[LiveApp, KnowledgeBase]) -> None:
    app, paged_kb = paged
    pages = paged_kb.pages(LONG_ENTRY)
    assert len(pages) >= 3
    student = Student(app)
    assert student.says(paged_kb.entries[LONG_ENTRY].question) == pages[0]
    assert pages[0].endswith(f"（1/{len(pages)}）")
    words = ["更多", "继续", "下一页", "更多。"]
    for n, page in enumerate(pages[1:]):
        assert student.says(words[n % len(words)]) == page
    assert pages[-1].endswith(f"（{len(pages)}/{len(pages)}）")
    assert student.says("更多") == paged_kb.text("no_more")
    student.says(paged_kb.entries[LONG_ENTRY].question)
    student.says(paged_kb.entries["chsi-what"].question)
    assert student.says("更多") == paged_kb.text("no_more")


def test_state_expires_after_a_short_ttl(tmp_path: Path, redis_url: str, kb: KnowledgeBase, matcher: Matcher) -> None:
    app = start_app(tmp_path, REDIS_URL=redis_url, REDIS_PREFIX=f"test:{uuid.uuid4().hex[:10]}:", SESSION_TTL="1")
    try:
        student = Student(app)
        question, _ = clarifying(matcher)
        student.says(question)
        assert app.store().session(student.openid).get("list")
        assert eventually(lambda: not app.store().session(student.openid)), "the session should expire"
        assert student.says("2") == kb.text("number_without_list")
    finally:
        app.stop()
        drop_keys(redis_url, app.prefix)


def test_redis_stopped_mid_conversation_then_restarted(tmp_path: Path, kb: KnowledgeBase, matcher: Matcher) -> None:
    redis_server = EmbeddedRedis(tmp_path / "redis").start()
    app = start_app(tmp_path, REDIS_URL=redis_server.url)
    try:
        student = Student(app)
        question, candidates = clarifying(matcher)
        student.says(question)
        redis_server.stop()
        assert student.says("2") == kb.text("number_without_list")
        listed = student.says(question)
        assert kb.text("list_outro_stateless") in listed and kb.text("clarify_outro") not in listed
        assert student.says(kb.entries["diploma-lost"].question).startswith(kb.pages("diploma-lost")[0].split("\n")[0])
        redis_server.start()
        assert eventually(lambda: app.health()["redis"] == "up")
        student.says("我是本科生")
        student.says(question)
        assert student.says("2") == kb.paginate(kb.answer(candidates[1], "undergrad"))[0]
        assert "Traceback" not in app.log_text()
    finally:
        app.stop()
        redis_server.stop()
