"""The staff console over HTTP: the real app (Flask test client for page logic, ``python app.py`` for cross-checks)
with a real Redis. Forms are read from the served HTML and posted back as a browser would."""
from __future__ import annotations

import datetime as dt
import html
import io
import os
import re
import uuid
from pathlib import Path
from typing import Any, Iterator

import openpyxl
import pytest
import requests
import yaml
from flask import Flask, request
from flask.testing import FlaskClient

import bot
import state
from admin import auth
from admin import entries as entries_module, files as files_module, sheet as sheet_module
from app import create_app
from conftest import TOKEN, LiveApp, drop_keys, introduce, start_app
from console_helpers import create_user_cli, csrf, field_errors, form, forms, wait_for
from knowledge import impact
from knowledge.base import KnowledgeBase
from knowledge.live import LiveKnowledge, entry_from_yaml, entry_to_yaml
from wechatsim import text_message

PASSWORD = "correct horse battery"
ENTRY = "diploma-lost"
OTHER = "xueli-query"
GET_PAGES = [
    "/admin/", "/admin/entries", "/admin/entries?q=学历", f"/admin/entries/{ENTRY}", "/admin/entries/new", "/admin/rules",
    "/admin/texts", "/admin/out-of-domain", "/admin/unanswered", "/admin/usage", "/admin/usage.csv", "/admin/spreadsheet",
    "/admin/spreadsheet/export.xlsx", "/admin/audit", "/admin/try?q=毕业证丢了", f"/admin/history/entries/{ENTRY}.yaml",
    f"/admin/history/entries/{ENTRY}.yaml/0",
]
POST_ACTIONS = [
    f"/admin/entries/{ENTRY}", "/admin/entries/new", "/admin/rules", "/admin/texts", "/admin/out-of-domain",
    "/admin/unanswered/similar", "/admin/unanswered/out-of-domain", "/admin/unanswered/handled", "/admin/spreadsheet/import",
    "/admin/spreadsheet/confirm", f"/admin/history/entries/{ENTRY}.yaml/0/restore", "/admin/logout",
]


class Console:
    """One app (its own key prefix in the test Redis) and what a test needs to drive it."""

    def __init__(self, app: Flask):
        self.app = app

    @property
    def bot(self) -> bot.Bot:
        return self.app.extensions["xueji"]

    @property
    def store(self) -> state.Store:
        return self.bot.store

    @property
    def live(self) -> LiveKnowledge:
        return bot.live_knowledge(self.app.config, self.store)

    def client(self, address: str = "127.0.0.1") -> FlaskClient:
        client = self.app.test_client()
        client.environ_base["REMOTE_ADDR"] = address
        return client

    def signed_in(self, user: str = "alice", address: str = "127.0.0.1") -> FlaskClient:
        client = self.client(address)
        response = login(client, user, PASSWORD)
        assert response.status_code == 302, response.text
        return client

    def entry(self, entry_id: str = ENTRY) -> dict[str, Any]:
        text, _ = self.live.read(f"entries/{entry_id}.yaml")
        assert text is not None
        return entry_from_yaml(text)

    def served(self, version: int) -> None:
        """Wait until this process answers with knowledge ``version`` (the reload thread swaps it in)."""
        wait_for(lambda: self.bot.version == version, timeout=10)


def login(client: FlaskClient, user: str, password: str) -> Any:
    page = client.get("/admin/login")
    return client.post("/admin/login", data={"username": user, "password": password, "csrf_token": csrf(page.text)})


def edit_form(client: FlaskClient, path: str) -> Any:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return form(page.text, "edit")


def post_edit(client: FlaskClient, path: str, action: str = "save", **changes: str) -> Any:
    found = edit_form(client, path)
    return client.post(path, data=found.data(("action", action), **changes))


@pytest.fixture
def console(tmp_path: Path, redis_url: str, prefix: str) -> Iterator[Console]:
    app = create_app({
        "WECHAT_TOKEN": TOKEN, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "SECRET_KEY": "console-test-secret",
        "INSTANCE_PATH": str(tmp_path / "instance"), "KB_RELOAD_INTERVAL": 0.1,
    })
    app.config["TESTING"] = True
    with app.app_context():
        auth.create_user("alice", PASSWORD)
        auth.create_user("bob", PASSWORD)
    yield Console(app)
    if app.extensions["xueji"].reloader is not None:
        app.extensions["xueji"].reloader.stop()


# --- sign-in, session, CSRF, throttling -----------------------------------------------------

@pytest.mark.parametrize("path", GET_PAGES)
def test_every_page_needs_a_signed_in_staff_member(console: Console, path: str) -> None:
    response = console.client().get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")


@pytest.mark.parametrize("path", POST_ACTIONS)
def test_every_action_is_refused_without_sign_in(console: Console, path: str) -> None:
    client = console.client()
    page = client.get("/admin/login")  # a session with a valid CSRF token, but nobody signed in
    response = client.post(path, data={"csrf_token": csrf(page.text), "answer": "x", "text": "x", "key": "x", "entry": ENTRY})
    assert response.status_code == 302 and response.headers["Location"].startswith("/admin/login")
    assert console.live.version() == 0


@pytest.mark.parametrize("path", GET_PAGES)
def test_every_page_renders_for_staff(console: Console, path: str) -> None:
    response = console.signed_in().get(path)
    assert response.status_code in (200, 302), response.text
    if response.status_code == 200 and response.mimetype == "text/html":
        assert "<html lang=\"zh-CN\">" in response.text and "Traceback" not in response.text
    assert response.headers["Cache-Control"] == "no-store" and response.headers["X-Frame-Options"] == "DENY"


EDIT_PAGES = [f"/admin/entries/{ENTRY}", "/admin/entries/new", "/admin/rules", "/admin/texts", "/admin/out-of-domain", "/admin/spreadsheet"]


def test_an_edit_form_starts_importing_the_trainer_and_other_pages_do_not(console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    """The draft of an edit is trained next: scikit-learn is imported while staff type, not when they press 试一试."""
    started: list[str] = []
    for module in (entries_module, files_module, sheet_module):
        monkeypatch.setattr(module, "prepare_training", lambda: started.append(request.path))
    client = console.signed_in()
    for path in [*EDIT_PAGES, "/admin/entries", "/admin/unanswered", "/admin/usage", "/admin/audit"]:
        assert client.get(path).status_code == 200, path
    assert started == EDIT_PAGES


def test_sign_in_sets_a_safe_cookie_and_sign_out_ends_it(console: Console) -> None:
    client = console.client()
    response = login(client, "alice", PASSWORD)
    assert response.status_code == 302 and response.headers["Location"] == "/admin/entries"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/admin" in cookie
    assert "Secure" not in cookie  # plain HTTP here
    assert client.get("/admin/entries").status_code == 200
    page = client.get("/admin/entries")
    assert client.post("/admin/logout", data={"csrf_token": csrf(page.text)}).status_code == 302
    assert client.get("/admin/entries").status_code == 302
    actions = [(a["user"], a["action"]) for a in console.store.admin_audit()]
    assert ("alice", "login") in actions and ("alice", "logout") in actions


def test_the_signed_session_is_read_under_admin_only(console: Console) -> None:
    """The webhook, /metrics and /healthz never check a cookie's signature (nor set one): no work per message."""
    client = console.signed_in()
    cookie = client.get_cookie("xueji_admin", path="/admin")
    assert cookie is not None
    app = console.app
    for path, signed_in in (("/admin/entries", True), ("/wechat", False), ("/healthz", False), ("/metrics", False)):
        with app.test_request_context(path, headers={"Cookie": f"xueji_admin={cookie.value}"}):
            session = app.session_interface.open_session(app, request)
            assert (session is not None and session.get("admin") == "alice") is signed_in, path
    response = client.get("/healthz", headers={"Cookie": f"xueji_admin={cookie.value}"})
    assert response.status_code == 200 and "Set-Cookie" not in response.headers


def test_wrong_password_is_refused_and_the_page_says_so(console: Console) -> None:
    client = console.client()
    response = login(client, "alice", "wrong password")
    assert response.status_code == 401 and "用户名或密码不对" in response.text
    assert client.get("/admin/entries").status_code == 302
    assert login(client, "nobody", PASSWORD).status_code == 401


def test_open_redirect_after_sign_in_is_not_followed(console: Console) -> None:
    client = console.client()
    page = client.get("/admin/login?next=https://evil.example/admin")
    response = client.post("/admin/login?next=https://evil.example/admin", data={"username": "alice", "password": PASSWORD, "csrf_token": csrf(page.text)})
    assert response.headers["Location"] == "/admin/entries"


def test_session_cookie_is_secure_behind_an_https_proxy_only_when_configured(tmp_path: Path, redis_url: str, prefix: str) -> None:
    for proxies, secure in ((1, True), (0, False)):
        app = create_app({"WECHAT_TOKEN": TOKEN, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "SECRET_KEY": "s", "INSTANCE_PATH": str(tmp_path), "KB_RELOAD_INTERVAL": 0, "TRUSTED_PROXIES": proxies})
        response = app.test_client().get("/admin/login", headers={"X-Forwarded-Proto": "https"})
        assert ("Secure" in response.headers["Set-Cookie"]) is secure


def test_a_post_without_the_csrf_token_is_refused_and_saves_nothing(console: Console) -> None:
    client = console.signed_in()
    found = edit_form(client, f"/admin/entries/{ENTRY}")
    data = found.data(("action", "confirm"), answer="没有校验码的改动。")
    del data["csrf_token"]
    response = client.post(f"/admin/entries/{ENTRY}", data=data)
    assert response.status_code == 400 and "表单校验失败" in response.text
    data["csrf_token"] = "forged-token"
    assert client.post(f"/admin/entries/{ENTRY}", data=data).status_code == 400
    assert console.live.version() == 0 and console.entry()["answer"] != "没有校验码的改动。"
    fresh = console.client()
    assert fresh.post("/admin/login", data={"username": "alice", "password": PASSWORD}).status_code == 400


def test_repeated_wrong_passwords_slow_down_the_account(console: Console) -> None:
    client = console.client("10.0.0.1")
    for _ in range(auth.FREE_USER_FAILURES):
        assert login(client, "alice", "guess").status_code == 401
    # now even the right password must wait, from this address or another one
    throttled = login(client, "alice", PASSWORD)
    assert throttled.status_code == 429 and "尝试次数太多" in throttled.text
    assert login(console.client("10.0.0.2"), "alice", PASSWORD).status_code == 429
    # another account is not affected, and a throttled try is not even checked (so it does not count)
    assert login(console.client("10.0.0.1"), "bob", PASSWORD).status_code == 302
    count, _ = console.store.admin_failures("user", "alice")
    assert count == auth.FREE_USER_FAILURES
    assert 0 < console.store.client.ttl(console.store.key("admin", "fail:user:alice")) <= state.ADMIN_FAIL_WINDOW


def test_many_failures_from_one_address_slow_down_every_account_there(console: Console) -> None:
    client = console.client("10.9.9.9")
    for n in range(auth.FREE_ADDRESS_FAILURES):
        assert login(client, f"user{n}", "guess").status_code == 401
    assert login(client, "bob", PASSWORD).status_code == 429
    assert login(console.client("10.9.9.10"), "bob", PASSWORD).status_code == 302


def test_the_wait_doubles_after_the_free_failures() -> None:
    free, now = auth.FREE_USER_FAILURES, 1000.0
    assert auth.wait_needed(free - 1, now, free, now) == 0
    waits = [auth.wait_needed(free + k, now, free, now) for k in range(4)]
    assert waits == [auth.FIRST_WAIT * 2**k for k in range(4)]
    assert auth.wait_needed(free + 20, now, free, now) == auth.MAX_WAIT
    assert auth.wait_needed(free, now, free, now + auth.FIRST_WAIT) == 0


def test_a_deleted_account_is_signed_out_at_once(console: Console) -> None:
    client = console.signed_in("bob")
    assert client.get("/admin/entries").status_code == 200
    result = console.app.test_cli_runner().invoke(args=["admin", "delete-user", "bob"])
    assert result.exit_code == 0, result.output
    assert client.get("/admin/entries").status_code == 302


def test_admin_commands_create_list_and_delete_users(console: Console) -> None:
    runner = console.app.test_cli_runner()
    created = runner.invoke(args=["admin", "create-user", "carol", "--password-stdin"], input="a long password\n")
    assert created.exit_code == 0 and "created" in created.output
    assert login(console.client(), "carol", "a long password").status_code == 302
    listed = runner.invoke(args=["admin", "list-users"])
    assert [line.split("\t")[0] for line in listed.output.splitlines()] == ["alice", "bob", "carol"]
    assert runner.invoke(args=["admin", "create-user", "dave", "--password-stdin"], input="short\n").exit_code != 0
    assert runner.invoke(args=["admin", "create-user", "bad name!", "--password-stdin"], input="a long password\n").exit_code != 0
    prompted = runner.invoke(args=["admin", "create-user", "erin"], input="another password\nanother password\n")
    assert prompted.exit_code == 0 and console.store.admin_user("erin") is not None
    assert runner.invoke(args=["admin", "delete-user", "carol"]).exit_code == 0
    assert runner.invoke(args=["admin", "delete-user", "carol"]).exit_code != 0
    assert console.store.admin_user("carol") is None
    hashed = console.store.admin_user("erin")["hash"]
    assert "another password" not in hashed and hashed.startswith(("scrypt:", "pbkdf2:"))


def test_redis_outage_is_a_503_page_not_a_500(tmp_path: Path) -> None:
    app = create_app({"WECHAT_TOKEN": TOKEN, "REDIS_URL": "redis://127.0.0.1:1/0", "SECRET_KEY": "s", "INSTANCE_PATH": str(tmp_path), "KB_RELOAD_INTERVAL": 0})
    client = app.test_client()
    response = login(client, "alice", PASSWORD)
    assert response.status_code == 503 and "暂时无法使用" in response.text
    result = app.test_cli_runner().invoke(args=["admin", "list-users"])
    assert result.exit_code != 0 and "Redis does not answer" in result.output


# --- entries ------------------------------------------------------------------------------

def test_entries_list_shows_hits_and_negative_feedback_and_searches(console: Console) -> None:
    for _ in range(3):
        console.store.commit(None, b"", "o-1", state.Effects(outcome="answer", topic=ENTRY))
    console.store.client.hincrby(console.store.key("stats", dt.date.today().strftime("%Y%m%d")), f"feedback:{ENTRY}", 2)
    old_day = (dt.date.today() - dt.timedelta(days=20))
    console.store.commit(None, b"", "o-1", state.Effects(outcome="answer", topic=ENTRY), today=old_day)  # outside 7 days
    client = console.signed_in()
    page = client.get("/admin/entries").text
    row = re.search(rf'<tr class="" data-entry="{ENTRY}">(.*?)</tr>', page, re.S).group(1)
    numbers = re.findall(r'<td class="num[^"]*"[^>]*>(\d+)</td>', row)
    assert numbers == ["3", "2"]
    assert len(re.findall(r"data-entry=", page)) == len(console.bot.kb.entries)
    found = client.get("/admin/entries", query_string={"q": "毕业证"}).text
    ids = re.findall(r'<tr class="[^"]*" data-entry="([^"]+)">', found)
    assert ENTRY in ids and "account-register" not in ids and len(ids) < len(console.bot.kb.entries)
    assert "没有找到" in client.get("/admin/entries", query_string={"q": "完全不存在的词语xyz"}).text


def test_editing_an_answer_saves_it_and_the_bot_answers_with_it(console: Console) -> None:
    client = console.signed_in()
    new_answer = "学历证书遗失后可以申请学历证明书。\n请联系：{office_contact}"
    response = post_edit(client, f"/admin/entries/{ENTRY}", action="confirm", answer=new_answer, message="shorter")
    assert response.status_code == 302 and response.headers["Location"] == f"/admin/entries/{ENTRY}"
    assert console.entry()["answer"].strip() == new_answer
    assert console.entry()["updated"] == dt.date.today().isoformat()
    version = console.live.version()
    assert version == 1
    console.served(version)
    assert console.bot.kb.render(ENTRY).startswith("学历证书遗失后可以申请学历证明书。")
    page = client.get(f"/admin/entries/{ENTRY}").text
    assert "已保存" in page and "学历证书遗失后可以申请学历证明书" in page
    audit = console.store.admin_audit()
    assert audit[0]["user"] == "alice" and audit[0]["action"] == "kb.save" and ENTRY in audit[0]["detail"]


def test_saving_an_unchanged_form_saves_nothing(console: Console) -> None:
    client = console.signed_in()
    response = post_edit(client, f"/admin/entries/{ENTRY}")
    assert response.status_code == 302
    assert console.live.version() == 0
    assert "没有改动" in client.get(response.headers["Location"]).text


def test_invalid_edits_are_refused_with_reasons_next_to_the_fields(console: Console) -> None:
    client = console.signed_in()
    before = console.live.read(f"entries/{ENTRY}.yaml")
    cases = [
        ({"similar": "只有一个相似问"}, "similar"),
        ({"answer": "请联系 {no_such_placeholder}"}, "answer"),
        ({"links": "学信网 | http://not-https.example"}, "links"),
        ({"links": "只有标题没有网址"}, "links"),
        ({"question": ""}, "question"),
        ({"source": "999 | 问题1"}, "source"),
    ]
    for changes, field in cases:
        response = post_edit(client, f"/admin/entries/{ENTRY}", **changes)
        assert response.status_code == 422, (changes, response.status_code)
        assert field in field_errors(response.text), (changes, field_errors(response.text))
        assert "没有保存" in response.text
        # the form comes back with what was typed
        assert form(response.text, "edit").value(next(iter(changes))) == next(iter(changes.values()))
    assert console.live.read(f"entries/{ENTRY}.yaml") == before and console.live.version() == 0


def test_a_similar_question_taken_by_another_entry_is_refused(console: Console) -> None:
    client = console.signed_in()
    taken = console.entry(OTHER)["similar"][0]
    similar = "\n".join([*console.entry()["similar"], taken])
    response = post_edit(client, f"/admin/entries/{ENTRY}", similar=similar)
    assert response.status_code == 422 and OTHER in " ".join(field_errors(response.text)["similar"])
    assert console.live.version() == 0


def test_concurrent_edit_is_detected_and_shown_as_a_diff(console: Console) -> None:
    alice, bob = console.signed_in("alice"), console.signed_in("bob")
    path = f"/admin/entries/{ENTRY}"
    alice_form, bob_form = edit_form(alice, path), edit_form(bob, path)
    saved = alice.post(path, data=alice_form.data(("action", "confirm"), answer="爱丽丝的版本。"))
    assert saved.status_code == 302
    refused = bob.post(path, data=bob_form.data(("action", "confirm"), answer="鲍勃的版本。"))
    assert refused.status_code == 409
    assert "别人刚刚改过" in refused.text
    assert re.search(r'<span class="del">-[^<]*爱丽丝的版本。', refused.text) and re.search(r'<span class="add">\+[^<]*鲍勃的版本。', refused.text)
    assert console.entry()["answer"].strip() == "爱丽丝的版本。"
    # having seen the difference, bob may still save his version: the form now carries the new revision
    again = bob.post(path, data=form(refused.text, "edit").data(("action", "confirm")))
    assert again.status_code == 302 and console.entry()["answer"].strip() == "鲍勃的版本。"
    assert [h["user"] for h in console.live.history(f"entries/{ENTRY}.yaml")][:2] == ["bob", "alice"]


def test_history_shows_who_when_and_diff_and_restores_an_old_version(console: Console) -> None:
    client = console.signed_in()
    path = f"/admin/entries/{ENTRY}"
    assert post_edit(client, path, action="confirm", answer="第一版答案。").status_code == 302
    assert post_edit(client, path, action="confirm", answer="第二版答案。").status_code == 302
    page = client.get(f"/admin/history/entries/{ENTRY}.yaml").text
    assert re.findall(r'data-rev="(\d+)"', page) == ["2", "1", "0"]
    assert "alice" in page and re.search(r"\+\s+answer: 第二版答案。", html.unescape(re.sub(r"<[^>]+>", "", page)))
    restore = form(page, action=f"/admin/history/entries/{ENTRY}.yaml/1/restore")
    response = client.post(restore.action, data=restore.data())
    assert response.status_code == 302
    assert console.entry()["answer"].strip() == "第一版答案。"
    history = console.live.history(f"entries/{ENTRY}.yaml")
    assert history[0]["rev"] == 3 and "restore" in history[0]["message"] and history[0]["user"] == "alice"
    shipped = client.get(f"/admin/history/entries/{ENTRY}.yaml").text
    back = form(shipped, action=f"/admin/history/entries/{ENTRY}.yaml/0/restore")
    assert client.post(back.action, data=back.data()).status_code == 302
    assert console.live.read(f"entries/{ENTRY}.yaml")[0] == console.live.shipped()[f"entries/{ENTRY}.yaml"]


def test_a_new_entry_is_created_and_a_bad_id_refused(console: Console) -> None:
    client = console.signed_in()
    page = client.get("/admin/entries/new", query_string={"question": "学位证丢了怎么补办？"})
    new_form = form(page.text, "edit")
    assert new_form.value("question") == "学位证丢了怎么补办？"
    similar = "\n".join(["学位证书丢了", "学位证遗失怎么办", "学位证书补办", "学位证丢失补发", "学位证掉了", "学位证书遗失证明"])
    fields = {"similar": similar, "answer": "学位证书遗失的，请联系{office}。", "source": "000 | 问题7", "keywords": "学位证书遗失"}
    bad = client.post("/admin/entries/new", data=new_form.data(("action", "save"), id="Bad ID", **fields))
    assert bad.status_code == 422 and "id" in field_errors(bad.text)
    taken = client.post("/admin/entries/new", data=new_form.data(("action", "save"), id=ENTRY, **fields))
    assert taken.status_code == 422 and "已经存在" in field_errors(taken.text)["id"][0]
    response = client.post("/admin/entries/new", data=new_form.data(("action", "confirm"), id="degree-lost", **fields))
    assert response.status_code == 302 and response.headers["Location"] == "/admin/entries/degree-lost"
    created = console.entry("degree-lost")
    assert created["question"] == "学位证丢了怎么补办？" and len(created["similar"]) == 6 and created["enabled"]
    assert client.get("/admin/entries/degree-lost").status_code == 200


def _unreferenced_entry(console: Console) -> str:
    """An entry no menu button and no keyword rule points at (those refuse to be disabled)."""
    used = set(re.findall(r"entry: ([a-z0-9-]+)", console.live.read("menu.yaml")[0] + console.live.read("rules.yaml")[0]))
    return next(e for e in sorted(console.bot.kb.entries) if e not in used)


def test_disabling_an_entry_stops_the_bot_using_it(console: Console) -> None:
    client = console.signed_in()
    entry_id = _unreferenced_entry(console)
    found = edit_form(client, f"/admin/entries/{entry_id}")
    data = found.data(("action", "confirm"))
    data["enabled"] = "0"  # the checkbox unticked: only its hidden companion is sent
    response = client.post(f"/admin/entries/{entry_id}", data=data)
    assert response.status_code == 302 and console.entry(entry_id)["enabled"] is False
    console.served(console.live.version())
    assert entry_id not in console.bot.kb.entries
    assert f'class="disabled" data-entry="{entry_id}"' in client.get("/admin/entries").text


def _menu_entry(console: Console) -> str:
    """An entry a menu button answers with directly (``entry: <id>``), read from the live menu."""
    menu = yaml.safe_load(console.live.read("menu.yaml")[0])
    return next(b["entry"] for top in menu["button"] for b in [top, *top.get("sub_button", [])] if b.get("entry"))


def test_an_entry_the_menu_points_at_cannot_be_disabled(console: Console) -> None:
    client = console.signed_in()
    entry_id = _menu_entry(console)
    data = edit_form(client, f"/admin/entries/{entry_id}").data(("action", "confirm"))
    data["enabled"] = "0"
    response = client.post(f"/admin/entries/{entry_id}", data=data)
    assert response.status_code == 422 and "menu.yaml" in html.unescape(response.text)
    assert console.entry(entry_id)["enabled"] is True and console.live.version() == 0


# --- 试一试 and what would change ---------------------------------------------------------

def test_try_shows_the_decision_candidates_and_reply_of_the_live_bot(console: Console) -> None:
    client = console.signed_in()
    question = console.bot.kb.entries[ENTRY].question
    page = client.get("/admin/try", query_string={"q": question}).text
    assert 'data-action="answer"' in page and f'data-entry="{ENTRY}"' in page
    assert re.search(r'<table class="candidates">.*?' + ENTRY, page, re.S)
    bubbles = [html.unescape(b) for b in re.findall(r'<div class="bubble" data-page="\d+">(.*?)</div>', page, re.S)]
    assert bubbles == console.bot.kb.pages(ENTRY)
    fallback = client.get("/admin/try", query_string={"q": "今天食堂吃什么呢"}).text
    assert re.search(r'data-action="(fallback|clarify)"', fallback)


def test_try_answers_as_the_chosen_audience_and_defaults_to_the_profiles(console: Console) -> None:
    client = console.signed_in()
    kb = console.bot.kb
    entry_id = next(e for e in sorted(kb.entries) if any(v.audience != kb.profile.default_audience for v in kb.entries[e].variants))
    other = next(v.audience for v in kb.entries[entry_id].variants if v.audience != kb.profile.default_audience)
    question = kb.entries[entry_id].question
    for chosen, asked in ((kb.profile.default_audience, {}), (other, {"audience": other})):
        page = client.get("/admin/try", query_string={"q": question, **asked}).text
        assert 'data-action="answer"' in page and f'data-audience="{chosen}"' in page
        assert re.search(rf'<option value="{chosen}" selected>', page)
        bubbles = [html.unescape(b) for b in re.findall(r'<div class="bubble" data-page="\d+">(.*?)</div>', page, re.S)]
        assert bubbles == kb.paginate(kb.answer(entry_id, chosen))
    assert kb.answer(entry_id, other) != kb.answer(entry_id, kb.profile.default_audience)


def test_try_on_an_edit_page_uses_the_unsaved_draft(console: Console) -> None:
    client = console.signed_in()
    question = console.bot.kb.entries[ENTRY].question
    response = post_edit(client, f"/admin/entries/{ENTRY}", action="try", answer="草稿里的新答案。", try_question=question)
    assert response.status_code == 200 and "用未保存的草稿" in response.text
    assert re.search(r'<div class="bubble" data-page="1">草稿里的新答案。', response.text)
    assert form(response.text, "edit").value("answer") == "草稿里的新答案。"  # the draft stays in the form
    assert console.live.version() == 0
    live = client.get("/admin/try", query_string={"q": question}).text
    assert "草稿里的新答案" not in live


def _changed_rows(page: str) -> dict[str, tuple[str, str, str]]:
    rows = re.findall(r'<tr><td>(.*?)</td><td class="muted">(.*?)</td>\s*<td data-old="([^"]*)">.*?<td data-new="([^"]*)">', page, re.S)
    return {html.unescape(q): (source, old, new) for q, source, old, new in rows}


def test_what_would_change_lists_the_changed_decisions_before_saving(console: Console) -> None:
    client = console.signed_in()
    live = console.bot.matcher
    # the live bot answers these labelled questions with other entries; add them all to OTHER
    taken = {q for e in console.bot.kb.entries.values() for q in [e.question, *e.similar]}
    moved = [q for q, _ in impact.labelled_questions() if q not in taken and (m := live.match(q)).action == "answer" and m.entry_id != OTHER][:5]
    similar = "\n".join([*console.entry(OTHER)["similar"], *moved])
    response = post_edit(client, f"/admin/entries/{OTHER}", similar=similar)
    assert response.status_code == 200 and "保存后会改变判断的问题" in response.text
    rows = _changed_rows(response.text)
    assert rows, "some decision changes"
    drafted = entry_from_yaml(console.live.read(f"entries/{OTHER}.yaml")[0])
    drafted["similar"] = [*drafted["similar"], *moved]  # in the order the form posts them
    _, draft = console.live.draft({f"entries/{OTHER}.yaml": entry_to_yaml(drafted)})
    for question, (_, old, new) in rows.items():
        before, after = live.match(question), draft.match(question)
        assert old == f"{before.action}:{before.entry_id or ''}" and new == f"{after.action}:{after.entry_id or ''}", question
        assert old != new or before.candidates != after.candidates
    assert console.live.version() == 0  # nothing saved yet
    confirm = form(response.text, "edit")
    assert ("action", "confirm") in confirm.buttons
    saved = client.post(f"/admin/entries/{OTHER}", data=confirm.data(("action", "confirm")))
    assert saved.status_code == 302 and set(moved) <= set(console.entry(OTHER)["similar"])


def test_what_would_change_shows_a_question_a_new_rule_takes(console: Console) -> None:
    client = console.signed_in()
    question, before = next((q, m) for q, _ in impact.labelled_questions() if (m := console.bot.matcher.match(q)).entry_id not in (OTHER, None))
    found = edit_form(client, "/admin/rules")
    row = next(k.split("-")[1] for k, v in found.fields if k.endswith("-keywords") and not v)
    response = client.post("/admin/rules", data=found.data(("action", "save"), **{
        f"rules-{row}-keywords": question, f"rules-{row}-match": "exact", f"rules-{row}-target": "entry", f"rules-{row}-value": OTHER}))
    assert response.status_code == 200
    assert _changed_rows(response.text)[question][1:] == (f"{before.action}:{before.entry_id}", f"rule:{OTHER}")
    assert console.live.version() == 0


def test_what_would_change_includes_recorded_unanswered_questions(console: Console) -> None:
    question = "学历备案表在哪里下载打印"
    console.store.commit(None, b"", "o-2", state.Effects(outcome="fallback", unanswered=question))
    client = console.signed_in()
    if console.bot.matcher.match(question).entry_id == OTHER:
        pytest.skip("the live bot already answers this question with that entry")
    similar = "\n".join([*console.entry(OTHER)["similar"], question])
    response = post_edit(client, f"/admin/entries/{OTHER}", similar=similar)
    assert _changed_rows(response.text)[question][0] == "unanswered"


# --- unanswered --------------------------------------------------------------------------

def _record_unanswered(console: Console, text: str, times: int = 1) -> None:
    for _ in range(times):
        console.store.commit(None, b"", "o-3", state.Effects(outcome="fallback", unanswered=text))


def test_unanswered_page_groups_counts_and_orders_newest_first(console: Console) -> None:
    _record_unanswered(console, "第一个没答上的问题", 3)
    _record_unanswered(console, "第一个没答上的问题！")  # the same once normalised
    _record_unanswered(console, "第二个没答上的问题")
    page = console.signed_in().get("/admin/unanswered").text
    questions = re.findall(r'<span class="question">「(.*?)」</span>\s*<span class="count"[^>]*>(\d+) 次', page)
    assert [q for q, _ in questions][:2] == ["第二个没答上的问题", "第一个没答上的问题！"]
    assert dict(questions)["第一个没答上的问题！"] == "4"


def test_an_unanswered_question_becomes_a_similar_question_and_is_answered(console: Console) -> None:
    text = "毕业证书被我弄丢了现在咋整啊"
    _record_unanswered(console, text, 2)
    client = console.signed_in()
    page = client.get("/admin/unanswered").text
    add = next(f for f in forms(page) if f.action == "/admin/unanswered/similar" and f.value("text") == text)
    suggested = re.search(r'<optgroup label="推荐[^"]*">\s*<option value="([^"]+)"', page)
    assert suggested, "the matcher's top candidates are suggested"
    response = client.post(add.action, data=add.data(entry=ENTRY))
    assert response.status_code == 302
    assert text in console.entry()["similar"]
    assert f"「{text}」</span>" not in client.get("/admin/unanswered").text  # handled: hidden
    console.served(console.live.version())
    assert console.bot.matcher.match(text).entry_id == ENTRY


def test_an_unanswered_question_becomes_an_out_of_domain_example(console: Console) -> None:
    text = "自考本科报名费多少钱"
    _record_unanswered(console, text)
    client = console.signed_in()
    page = client.get("/admin/unanswered").text
    add = next(f for f in forms(page) if f.action == "/admin/unanswered/out-of-domain" and f.value("text") == text)
    assert client.post(add.action, data=add.data()).status_code == 302
    saved, _ = console.live.read("lexicon/out_of_domain.yaml")
    assert text in yaml.safe_load(saved)["examples"]
    assert text in client.get("/admin/out-of-domain").text


def test_an_unanswered_question_opens_a_prefilled_new_entry_and_can_be_marked_handled(console: Console) -> None:
    text = "学位证书丢了能补吗"
    _record_unanswered(console, text)
    client = console.signed_in()
    page = client.get("/admin/unanswered").text
    link = re.search(r'href="(/admin/entries/new\?[^"]+)"', page).group(1).replace("&amp;", "&")
    new = client.get(link).text
    assert form(new, "edit").value("question") == text and form(new, "edit").value("from_key")
    handled = next(f for f in forms(page) if f.action == "/admin/unanswered/handled" and f.value("text") == text)
    assert client.post(handled.action, data=handled.data()).status_code == 302
    assert f"「{text}」</span>" not in client.get("/admin/unanswered").text
    assert f"「{text}」</span>" in client.get("/admin/unanswered?handled=1").text


# --- usage -------------------------------------------------------------------------------

def test_usage_page_draws_the_chart_and_the_csv_matches(console: Console) -> None:
    today = dt.date.today()
    plan = {0: ("answer", 4), 1: ("fallback", 2), 3: ("human", 1), 29: ("clarify", 5), 30: ("answer", 9)}
    for days_ago, (outcome, count) in plan.items():
        for _ in range(count):
            console.store.commit(None, b"", "o-4", state.Effects(outcome=outcome, topic=ENTRY if outcome == "answer" else None), today=today - dt.timedelta(days=days_ago))
    console.store.client.hincrby(console.store.key("stats", today.strftime("%Y%m%d")), f"feedback:{OTHER}", 3)
    client = console.signed_in()
    page = client.get("/admin/usage").text
    assert page.count('<polyline class="series') == 5 and "<svg" in page
    assert "共 12 条消息" in page  # 30 days ago is outside the window
    assert re.search(rf'{ENTRY}</a>.*?<span class="num">4</span>', page, re.S)
    assert re.search(rf'{OTHER}</a>.*?<span class="num warn">3</span>', page, re.S)
    csv = client.get("/admin/usage.csv")
    assert csv.mimetype == "text/csv" and "attachment" in csv.headers["Content-Disposition"]
    lines = csv.data.decode("utf-8-sig").splitlines()
    assert lines[0] == "date,messages,answer,clarify,fallback,human" and len(lines) == 31
    rows = {line.split(",")[0]: line.split(",")[1:] for line in lines[1:]}
    assert rows[today.isoformat()] == ["4", "4", "0", "0", "0"]
    assert rows[(today - dt.timedelta(days=1)).isoformat()] == ["2", "0", "0", "2", "0"]
    assert rows[(today - dt.timedelta(days=29)).isoformat()] == ["5", "0", "5", "0", "0"]


# --- rules, texts, out-of-domain ----------------------------------------------------------

def test_texts_are_edited_validated_and_kept_with_their_comments(console: Console) -> None:
    client = console.signed_in()
    response = post_edit(client, "/admin/texts", thanks="不用谢，祝你顺利毕业！")
    assert response.status_code == 302
    text, _ = console.live.read("texts.yaml")
    assert text.startswith("#") and yaml.safe_load(text)["texts"]["thanks"].strip() == "不用谢，祝你顺利毕业！"
    bad = post_edit(client, "/admin/texts", fallback="答不了 {nope}")
    assert bad.status_code == 422 and "fallback" in field_errors(bad.text)
    empty = post_edit(client, "/admin/texts", welcome="")
    assert empty.status_code == 422 and "welcome" in field_errors(empty.text)
    assert console.live.version() == 1


def test_keyword_rules_are_added_tried_and_saved(console: Console) -> None:
    client = console.signed_in()
    found = edit_form(client, "/admin/rules")
    empty_row = next(int(n) for n, v in ((re.match(r"rules-(\d+)-keywords", k).group(1), v) for k, v in found.fields if re.match(r"rules-\d+-keywords", k)) if not v)
    changes = {f"rules-{empty_row}-keywords": "补办毕业证", f"rules-{empty_row}-match": "exact", f"rules-{empty_row}-target": "entry", f"rules-{empty_row}-value": ENTRY}
    tried = client.post("/admin/rules", data=found.data(("action", "try"), try_question="补办毕业证", **changes))
    assert tried.status_code == 200 and f'data-entry="{ENTRY}"' in tried.text
    bad = client.post("/admin/rules", data=found.data(("action", "save"), **{**changes, f"rules-{empty_row}-value": "no-such-entry"}))
    assert bad.status_code == 422 and "no-such-entry" in bad.text
    saved = client.post("/admin/rules", data=found.data(("action", "confirm"), **changes))
    assert saved.status_code == 302
    rules = yaml.safe_load(console.live.read("rules.yaml")[0])["rules"]
    assert {"keywords": ["补办毕业证"], "match": "exact", "entry": ENTRY} in rules
    assert console.live.read("rules.yaml")[0].startswith("# Keyword rules")


def test_out_of_domain_examples_file_is_created_when_absent(console: Console) -> None:
    client = console.signed_in()
    existed = console.live.read("lexicon/out_of_domain.yaml")[0] is not None
    page = client.get("/admin/out-of-domain").text
    assert ("还没有范围外例句" in page) is not existed
    current = form(page, "edit").value("examples") or ""
    response = post_edit(client, "/admin/out-of-domain", action="confirm", examples=(current + "\n四六级成绩怎么查").strip())
    assert response.status_code == 302
    assert "四六级成绩怎么查" in yaml.safe_load(console.live.read("lexicon/out_of_domain.yaml")[0])["examples"]


# --- spreadsheet -------------------------------------------------------------------------

def _upload(client: FlaskClient, data: bytes) -> Any:
    page = client.get("/admin/spreadsheet").text
    return client.post("/admin/spreadsheet/import", data={"csrf_token": csrf(page), "file": (io.BytesIO(data), "knowledge.xlsx")}, content_type="multipart/form-data")


def test_xlsx_export_then_import_is_lossless(console: Console) -> None:
    client = console.signed_in()
    exported = client.get("/admin/spreadsheet/export.xlsx")
    assert exported.mimetype.endswith("spreadsheetml.sheet")
    book = openpyxl.load_workbook(io.BytesIO(exported.data))
    assert book.active.max_row - 1 == len(console.bot.kb.entries)
    preview = _upload(client, exported.data)
    assert preview.status_code == 200 and "会改动 0 个文件" in preview.text
    assert console.live.version() == 0


def test_xlsx_import_previews_then_saves_all_at_once(console: Console) -> None:
    client = console.signed_in()
    book = openpyxl.load_workbook(io.BytesIO(client.get("/admin/spreadsheet/export.xlsx").data))
    sheet = book.active
    header = [c.value for c in sheet[1]]
    id_col, answer_col = header.index("id") + 1, next(i for i, h in enumerate(header, 1) if h and "答案" in str(h) and "分" not in str(h))
    edited = []
    for row in range(2, sheet.max_row + 1):
        if sheet.cell(row, id_col).value in (ENTRY, OTHER):
            sheet.cell(row, answer_col).value = f"表格里改过的答案：{sheet.cell(row, id_col).value}"
            edited.append(sheet.cell(row, id_col).value)
    out = io.BytesIO()
    book.save(out)
    preview = _upload(client, out.getvalue())
    assert preview.status_code == 200 and "会改动 2 个文件" in preview.text
    assert console.live.version() == 0
    confirm = form(preview.text, action="/admin/spreadsheet/confirm")
    done = client.post(confirm.action, data=confirm.data())
    assert done.status_code == 302 and console.live.version() == 1
    for entry_id in edited:
        assert console.entry(entry_id)["answer"].strip() == f"表格里改过的答案：{entry_id}"
    assert client.post(confirm.action, data=confirm.data()).status_code == 404  # the upload is used once


def test_a_bad_spreadsheet_is_refused_whole(console: Console) -> None:
    client = console.signed_in()
    assert _upload(client, b"not a spreadsheet").status_code == 422
    book = openpyxl.load_workbook(io.BytesIO(client.get("/admin/spreadsheet/export.xlsx").data))
    sheet = book.active
    header = [c.value for c in sheet[1]]
    answer_col = next(i for i, h in enumerate(header, 1) if h and "答案" in str(h) and "分" not in str(h))
    sheet.cell(2, answer_col).value = "改了第一行"
    sheet.cell(3, answer_col).value = "坏占位符 {nope}"
    out = io.BytesIO()
    book.save(out)
    refused = _upload(client, out.getvalue())
    assert refused.status_code == 422 and "nope" in refused.text
    assert console.live.version() == 0


# --- across real HTTP: the console and the webhook of another process --------------------------

@pytest.fixture
def served_app(tmp_path: Path, redis_url: str) -> Iterator[LiveApp]:
    prefix = f"test:{uuid.uuid4().hex[:10]}:"
    app = start_app(tmp_path, REDIS_URL=redis_url, REDIS_PREFIX=prefix, SECRET_KEY="served-secret")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "REDIS_", "FLASK_"))},
           "WECHAT_TOKEN": TOKEN, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "INSTANCE_PATH": str(tmp_path / "cli")}
    created = create_user_cli(env, "alice", PASSWORD)
    assert created.returncode == 0, created.stderr
    yield app
    app.stop()
    drop_keys(redis_url, prefix)


def test_over_http_an_edit_is_answered_by_the_webhook(served_app: LiveApp, kb: KnowledgeBase) -> None:
    http = requests.Session()
    page = http.get(f"{served_app.base}/admin/login", timeout=10)
    signed = http.post(f"{served_app.base}/admin/login", data={"username": "alice", "password": PASSWORD, "csrf_token": csrf(page.text)}, timeout=10, allow_redirects=False)
    assert signed.status_code == 302
    edit = form(http.get(f"{served_app.base}/admin/entries/{ENTRY}", timeout=10).text, "edit")
    new_answer = "经网页后台修改的答案：请向毕业学校申请学历证明书。"
    saved = http.post(f"{served_app.base}/admin/entries/{ENTRY}", data=edit.data(("action", "confirm"), answer=new_answer), timeout=60, allow_redirects=False)
    assert saved.status_code == 302, saved.text
    question = kb.entries[ENTRY].question
    wechat = served_app.wechat()
    introduce(wechat, kb, "o-student")  # the edited answer is the default one, which 本专科生 get
    reply = wait_for(lambda: (r := wechat.send(text_message(question), mode="safe")).content and r.content.startswith(new_answer) and r, timeout=10)
    assert reply.status == 200
    assert http.post(f"{served_app.base}/admin/entries/{ENTRY}", data={"answer": "x"}, timeout=10).status_code == 400
