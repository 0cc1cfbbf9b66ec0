"""End to end: the real app (``python app.py``) over HTTP, with signed and AES-encrypted WeChat XML."""
from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import requests
import yaml

from conftest import ROOT, LiveApp, drop_keys, start_app
from knowledge.base import KnowledgeBase, load
from knowledge.paging import REPLY_LIMIT, utf8_len
from wechatsim import event_message, message_xml, new_msg_id, text_message

MODES = ["plain", "compat", "safe"]


def openid() -> str:
    return f"o-{uuid.uuid4().hex[:12]}"


def media_message(kind: str, **fields: object) -> dict:
    return {"ToUserName": "gh_account", "FromUserName": openid(), "CreateTime": int(time.time()), "MsgType": kind, "MsgId": new_msg_id(), **fields}


def longest_entry(kb: KnowledgeBase) -> str:
    return max(kb.entries, key=lambda entry_id: utf8_len(kb.render(entry_id)))


LONG_ENTRY = "xueli-certification"
CDATA_END = "看这里 ]]> 还有 <a href=\"https://www.chsi.com.cn/\">学信网</a> & 结束"


@pytest.fixture(scope="module")
def edited_knowledge(tmp_path_factory: pytest.TempPathFactory, kb: KnowledgeBase) -> Path:
    """A copy of the knowledge with one answer long enough to page and a text holding ``]]>``."""
    folder = tmp_path_factory.mktemp("knowledge") / "knowledge"
    shutil.copytree(ROOT / "knowledge", folder)
    entry_file = folder / "entries" / f"{LONG_ENTRY}.yaml"
    data = yaml.safe_load(entry_file.read_text(encoding="utf-8"))
    others = [e.answer for e in kb.entries.values() if e.id != LONG_ENTRY][:4]
    data["entry"]["answer"] = "\n\n".join([data["entry"]["answer"], *others])
    entry_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    texts_file = folder / "texts.yaml"
    texts = yaml.safe_load(texts_file.read_text(encoding="utf-8"))
    texts["texts"]["media"] = CDATA_END
    texts_file.write_text(yaml.safe_dump(texts, allow_unicode=True), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def paged_kb(edited_knowledge: Path) -> KnowledgeBase:
    kb = load(edited_knowledge)
    assert len(kb.pages(LONG_ENTRY)) >= 2
    return kb


@pytest.fixture(scope="module")
def paged_app(tmp_path_factory: pytest.TempPathFactory, redis_url: str, edited_knowledge: Path) -> Iterator[LiveApp]:
    app = start_app(tmp_path_factory.mktemp("paged"), REDIS_URL=redis_url, REDIS_PREFIX=f"test:{uuid.uuid4().hex[:10]}:", KNOWLEDGE_DIR=str(edited_knowledge))
    yield app
    app.stop()
    drop_keys(redis_url, app.prefix)


def topic_count(app: LiveApp, topic: str) -> int:
    return app.store().stats(dt.date.today()).get(f"topic:{topic}", 0)


# --- handshake -------------------------------------------------------------------------------

def test_handshake_echoes_echostr(live_app: LiveApp) -> None:
    response = live_app.wechat().handshake("echo-123456")
    assert response.status_code == 200 and response.text == "echo-123456"


def test_handshake_with_wrong_signature_is_403(live_app: LiveApp) -> None:
    response = live_app.wechat().handshake("x", signature="0" * 40)
    assert response.status_code == 403 and "Traceback" not in response.text


@pytest.mark.parametrize("drop", ["signature", "timestamp", "nonce", "echostr"])
def test_handshake_missing_a_parameter_is_400(live_app: LiveApp, drop: str) -> None:
    server = live_app.wechat()
    params = {**server.query(), "echostr": "x"}
    del params[drop]
    assert requests.get(server.url, params=params, timeout=5).status_code == 400


# --- every message type ----------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_text_question_is_answered_in_every_mode(live_app: LiveApp, kb: KnowledgeBase, mode: str) -> None:
    question = kb.entries["account-forgot-password"].question
    student = openid()
    reply = live_app.wechat().send(text_message(question, openid=student), mode=mode)
    assert reply.status == 200
    assert reply.fields["MsgType"] == "text"
    assert reply.fields["ToUserName"] == student and reply.fields["FromUserName"] == "gh_account"
    assert reply.content == kb.pages("account-forgot-password")[0]
    if mode == "safe":
        assert b"<Encrypt>" in reply.body and question.encode() not in reply.body


def test_voice_uses_its_recognition_text(live_app: LiveApp, kb: KnowledgeBase) -> None:
    question = kb.entries["account-phone-taken"].question
    typed = live_app.wechat().send(text_message(question, openid=openid()))
    spoken = live_app.wechat().send(media_message("voice", MediaId="m1", Format="amr", Recognition=question))
    assert spoken.content == typed.content == kb.pages("account-phone-taken")[0]


def test_voice_without_recognition_asks_to_type(live_app: LiveApp, kb: KnowledgeBase) -> None:
    reply = live_app.wechat().send(media_message("voice", MediaId="m1", Format="amr"))
    assert reply.content == kb.text("voice_unrecognized")


@pytest.mark.parametrize(
    "kind, fields",
    [
        ("image", {"PicUrl": "https://example.invalid/p.jpg", "MediaId": "m"}),
        ("video", {"MediaId": "m", "ThumbMediaId": "t"}),
        ("shortvideo", {"MediaId": "m", "ThumbMediaId": "t"}),
        ("location", {"Location_X": "43.8", "Location_Y": "125.3", "Scale": "15", "Label": "长春"}),
        ("link", {"Title": "t", "Description": "d", "Url": "https://example.invalid/"}),
        ("file", {"Title": "a.pdf", "Description": "d", "FileKey": "k", "FileMd5": "0", "FileTotalLen": "1"}),
    ],
)
def test_media_messages_get_a_polite_text(live_app: LiveApp, kb: KnowledgeBase, kind: str, fields: dict) -> None:
    reply = live_app.wechat().send(media_message(kind, **fields), mode="safe")
    assert reply.content == kb.text("media")


def test_unknown_message_type_is_acknowledged(live_app: LiveApp) -> None:
    reply = live_app.wechat().send(media_message("hologram", Payload="x"))
    assert reply.status == 200 and reply.body == b"success"


@pytest.mark.parametrize("extra", [{}, {"EventKey": "qrscene_123", "Ticket": "t"}])
def test_subscribe_gets_the_welcome(live_app: LiveApp, kb: KnowledgeBase, extra: dict) -> None:
    reply = live_app.wechat().send(event_message("subscribe", openid=openid(), **extra), mode="safe")
    assert reply.content.startswith(kb.text("welcome")) and "回复「人工」联系老师" in reply.content
    for n, entry_id in enumerate(kb.conversation.welcome_topics, 1):
        assert f"{n}. {kb.entries[entry_id].question}" in reply.content


def test_click_answers_the_menu_entry(live_app: LiveApp, kb: KnowledgeBase) -> None:
    for top in kb.menu.button:
        for button in [top, *top.sub_button]:
            if not button.key:
                continue
            reply = live_app.wechat().send(event_message("CLICK", openid=openid(), EventKey=button.key))
            if button.entry and kb.depends_on_audience(button.entry):
                assert reply.content.startswith(kb.text("audience_question")), button.key
            elif button.entry:
                assert reply.content == kb.pages(button.entry)[0], button.key
            else:
                group = kb.conversation.groups.get(button.group or "")
                titles = [kb.entries[e].question for e in group.entries] if group else [g.title for g in kb.conversation.groups.values()]
                assert all(f"{n}. {title}" in reply.content for n, title in enumerate(titles, 1)), button.key


def test_unknown_click_key_gets_a_helpful_text(live_app: LiveApp, kb: KnowledgeBase) -> None:
    reply = live_app.wechat().send(event_message("CLICK", openid=openid(), EventKey="NO_SUCH_KEY"))
    assert reply.content == kb.text("unknown_menu")


@pytest.mark.parametrize(
    "event, extra",
    [
        ("VIEW", {"EventKey": "https://www.chsi.com.cn/"}),
        ("LOCATION", {"Latitude": "43.8", "Longitude": "125.3", "Precision": "65"}),
        ("SCAN", {"EventKey": "123", "Ticket": "t"}),
        ("some_future_event", {}),
    ],
)
def test_other_events_are_acknowledged_with_success(live_app: LiveApp, event: str, extra: dict) -> None:
    reply = live_app.wechat().send(event_message(event, openid=openid(), **extra))
    assert reply.status == 200 and reply.body == b"success"


def test_unsubscribe_forgets_the_student(paged_app: LiveApp, paged_kb: KnowledgeBase) -> None:
    student = openid()
    server = paged_app.wechat()
    server.send(text_message(paged_kb.entries[LONG_ENTRY].question, openid=student))
    assert paged_app.store().session(student) != {}
    reply = server.send(event_message("unsubscribe", openid=student))
    assert reply.body == b"success"
    assert paged_app.store().session(student) == {}


# --- long answers and conversations ------------------------------------------------------------

def test_long_answer_is_paged_and_served_with_more(paged_app: LiveApp, paged_kb: KnowledgeBase) -> None:
    entry_id = LONG_ENTRY
    pages = paged_kb.pages(entry_id)
    student = openid()
    server = paged_app.wechat()
    received = [server.send(text_message(paged_kb.entries[entry_id].question, openid=student), mode="safe").content]
    for _ in range(len(pages) - 1):
        received.append(server.send(text_message("更多", openid=student), mode="safe").content)
    assert received == pages
    assert all(utf8_len(page) <= REPLY_LIMIT for page in received)
    assert server.send(text_message("更多", openid=student)).content == paged_kb.text("no_more")


def test_students_do_not_share_a_conversation(paged_app: LiveApp, paged_kb: KnowledgeBase) -> None:
    entry_id = LONG_ENTRY
    pages = paged_kb.pages(entry_id)
    alice, bob = openid(), openid()
    server = paged_app.wechat()
    server.send(text_message(paged_kb.entries[entry_id].question, openid=alice))
    assert server.send(text_message("更多", openid=bob)).content == paged_kb.text("no_more")
    if len(pages) > 1:
        assert server.send(text_message("更多", openid=alice)).content == pages[1]


# --- retries -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_a_retry_gets_the_same_bytes_and_counts_once(live_app: LiveApp, kb: KnowledgeBase, mode: str) -> None:
    message = text_message(kb.entries["xueli-certification"].question, openid=openid())
    before = topic_count(live_app, "xueli-certification")
    first = live_app.wechat().send(message, mode=mode)
    retry = live_app.wechat().send(message, mode=mode)
    assert first.status == retry.status == 200
    assert retry.body == first.body
    assert topic_count(live_app, "xueli-certification") == before + 1


def test_concurrent_retries_share_one_answer(live_app: LiveApp, kb: KnowledgeBase) -> None:
    message = text_message(kb.entries["chsi-what"].question, openid=openid())
    before = topic_count(live_app, "chsi-what")
    barrier = threading.Barrier(3)
    bodies: list[bytes] = []

    def deliver() -> None:
        server = live_app.wechat()
        barrier.wait()
        bodies.append(server.send(message, mode="safe").body)

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(bodies) == 3 and len(set(bodies)) == 1 and bodies[0].startswith(b"<xml>")
    assert topic_count(live_app, "chsi-what") == before + 1


def test_a_retried_click_counts_once(live_app: LiveApp) -> None:
    click = event_message("CLICK", openid=openid(), EventKey="MENU_HELP")
    before = live_app.store().stats(dt.date.today()).get("outcome:menu", 0)
    first = live_app.wechat().send(click)
    assert live_app.wechat().send(click).body == first.body
    assert live_app.store().stats(dt.date.today()).get("outcome:menu", 0) == before + 1


def test_a_retried_more_does_not_turn_the_page_twice(paged_app: LiveApp, paged_kb: KnowledgeBase) -> None:
    entry_id = LONG_ENTRY
    pages = paged_kb.pages(entry_id)
    student = openid()
    server = paged_app.wechat()
    server.send(text_message(paged_kb.entries[entry_id].question, openid=student))
    more = text_message("更多", openid=student)
    first = server.send(more)
    retry = server.send(more)
    assert first.content == retry.content == pages[1]
    following = server.send(text_message("更多", openid=student)).content
    assert following == (pages[2] if len(pages) > 2 else paged_kb.text("no_more"))


# --- bad input ---------------------------------------------------------------------------------

def test_post_with_wrong_signature_is_403(live_app: LiveApp) -> None:
    server = live_app.wechat()
    params = {**server.query(), "signature": "0" * 40}
    response = server.post_raw(message_xml(text_message("你好")), params)
    assert response.status_code == 403


def test_safe_mode_with_wrong_msg_signature_is_403(live_app: LiveApp) -> None:
    server = live_app.wechat()
    params = {**server.query(), "encrypt_type": "aes", "msg_signature": "0" * 40}
    response = server.post_raw("<xml><ToUserName>gh</ToUserName><Encrypt>abcd</Encrypt></xml>", params)
    assert response.status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        "this is not xml",
        "<xml><MsgType>text",
        '{"MsgType": "text"}',
        "<!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;&lol;'>]><xml><Content>&lol2;</Content></xml>",
        "<xml><ToUserName>gh</ToUserName><MsgType>text</MsgType></xml>",
        message_xml(text_message("x")).replace("<Content><![CDATA[x]]></Content>", "<Content><b>x</b></Content>"),
        "",
    ],
)
def test_bad_bodies_are_400(live_app: LiveApp, body: str) -> None:
    server = live_app.wechat()
    response = server.post_raw(body, server.query())
    assert response.status_code == 400
    assert "Traceback" not in response.text and len(response.text) < 200


def test_oversized_body_is_413(live_app: LiveApp) -> None:
    server = live_app.wechat()
    body = message_xml(text_message("学" * 30000))
    assert len(body.encode()) > 64 * 1024
    assert server.post_raw(body, server.query()).status_code == 413


def test_health_reports_redis(live_app: LiveApp) -> None:
    assert live_app.health() == {"status": "ok", "redis": "up", "mode": "stateful"}


def test_log_lines_are_structured_and_hold_no_openid_or_text(live_app: LiveApp, kb: KnowledgeBase) -> None:
    student = f"o-secret-{uuid.uuid4().hex}"
    question = "我的私人问题：学信网查不到学籍怎么办"
    live_app.wechat().send(text_message(question, openid=student))
    log = live_app.log_text()
    assert student not in log and question not in log
    lines = [line for line in log.splitlines() if "xueji.webhook" in line and '"outcome"' in line]
    assert lines, log[-2000:]
    record = json.loads(lines[-1])
    assert record["logger"] == "xueji.webhook" and record["level"] == "info"
    assert set(record) >= {"ts", "user", "type", "outcome", "topic", "latency_ms"}
    assert record["type"] == "text" and isinstance(record["latency_ms"], float)


def test_reply_text_with_cdata_terminator_arrives_intact(paged_app: LiveApp) -> None:
    for mode in MODES:
        reply = paged_app.wechat().send(media_message("image", PicUrl="https://example.invalid/p.jpg", MediaId="m"), mode=mode)
        assert reply.content == CDATA_END
