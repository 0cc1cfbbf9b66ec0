"""``flask menu validate/push/show`` as an operator runs them, against a local HTTP server playing WeChat's API.

WeChat's API cannot be reached from here, so ``FakeWeChat`` answers ``token``,
``menu/create`` and ``menu/get`` the way the platform does (JSON with errcode);
``WECHAT_API_BASE`` points wechatpy's client at it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from conftest import ROOT
from knowledge.base import KnowledgeBase
from knowledge.paging import utf8_len

FLASK = str(Path(sys.executable).parent / "flask")
APP_ID, SECRET = "wx0123456789abcdef", "s3cret"


class FakeWeChat:
    """The few API calls the menu needs; ``errors`` maps a path to the errcode it should answer with."""

    def __init__(self) -> None:
        self.menu: dict[str, Any] | None = None
        self.errors: dict[str, int] = {}
        self.calls: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, payload: dict[str, Any]) -> None:
                body = json.dumps(payload, ensure_ascii=False).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _route(self, method: str) -> None:
                url = urllib.parse.urlsplit(self.path)
                path = url.path.removeprefix("/cgi-bin/")
                query = dict(urllib.parse.parse_qsl(url.query))
                fake.calls.append(f"{method} {path}")
                if path in fake.errors:
                    code = fake.errors[path]
                    return self._answer({"errcode": code, "errmsg": f"fake error {code}"})
                if path == "token":
                    if query.get("appid") != APP_ID or query.get("secret") != SECRET:
                        return self._answer({"errcode": 40001, "errmsg": "invalid credential"})
                    return self._answer({"access_token": "TOKEN", "expires_in": 7200})
                if query.get("access_token") != "TOKEN":
                    return self._answer({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"})
                if path == "menu/create" and method == "POST":
                    length = int(self.headers.get("Content-Length", 0))
                    fake.menu = json.loads(self.rfile.read(length).decode("utf-8"))
                    return self._answer({"errcode": 0, "errmsg": "ok"})
                if path == "menu/get":
                    if fake.menu is None:
                        return self._answer({"errcode": 46003, "errmsg": "menu no exist"})
                    return self._answer({"menu": fake.menu})
                return self._answer({"errcode": 40066, "errmsg": "invalid url"})

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/cgi-bin/"


@pytest.fixture
def wechat() -> Iterator[FakeWeChat]:
    fake = FakeWeChat()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def flask(*args: str, knowledge: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "REDIS_", "FLASK_"))}
    environment.update(env)
    if knowledge is not None:
        environment["KNOWLEDGE_DIR"] = str(knowledge)
    return subprocess.run([FLASK, *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)


def api(fake: FakeWeChat, secret: str = SECRET) -> dict[str, str]:
    return {"WECHAT_APP_ID": APP_ID, "WECHAT_APP_SECRET": secret, "WECHAT_API_BASE": fake.base}


def test_validate_accepts_the_shipped_menu(kb: KnowledgeBase) -> None:
    result = flask("menu", "validate")
    assert result.returncode == 0, result.stderr
    assert f"{len(kb.menu.button)} top-level buttons" in result.stdout


def _menu_edit(tmp_path: Path, change: Callable[[dict], None]) -> Path:
    folder = tmp_path / "knowledge"
    shutil.copytree(ROOT / "knowledge", folder)
    path = folder / "menu.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return folder


def _sub(data: dict) -> list[dict]:
    return data["button"][0]["sub_button"]


LIMITS: dict[str, tuple[Callable[[dict], None], str]] = {
    "four top buttons": (lambda d: d["button"].append({"name": "更多", "key": "MENU_X", "entry": "chsi-what"}), "4 top-level buttons"),
    "six sub-buttons": (lambda d: _sub(d).append({"name": "多一个", "key": "MENU_SIX", "entry": "chsi-what"}), "6 sub-buttons"),
    "top name over 16 bytes": (lambda d: d["button"][0].update(name="学籍学历问题大全"), "over 16 bytes"),
    "sub name over 60 bytes": (lambda d: _sub(d)[0].update(name="学" * 21), "over 60 bytes"),
    "key over 128 bytes": (lambda d: _sub(d)[0].update(key="K" * 129), "over 128 bytes"),
    "unknown entry": (lambda d: _sub(d)[0].update(entry="no-such-entry"), "unknown entry 'no-such-entry'"),
    "unknown group": (lambda d: _sub(d)[0].update(entry=None, group="nogroup"), "unknown group 'nogroup'"),
    "duplicate key": (lambda d: _sub(d)[1].update(key=_sub(d)[0]["key"]), "used twice"),
}


@pytest.mark.parametrize("case", LIMITS)
def test_validate_catches_each_limit(tmp_path: Path, case: str) -> None:
    change, expected = LIMITS[case]
    result = flask("menu", "validate", knowledge=_menu_edit(tmp_path, change))
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr


def test_the_limits_are_the_platforms(kb: KnowledgeBase) -> None:
    """The shipped menu itself stays inside them (checked independently of the validator)."""
    assert len(kb.menu.button) <= 3 and all(len(b.sub_button) <= 5 for b in kb.menu.button)
    assert all(utf8_len(b.name) <= 16 for b in kb.menu.button)
    assert all(utf8_len(s.name) <= 60 and utf8_len(s.key or "") <= 128 for b in kb.menu.button for s in b.sub_button)
    views = [s.url for b in kb.menu.button for s in b.sub_button if s.url]
    assert views and all(url in kb.profile.chsi.values() for url in views)


def test_push_then_show(wechat: FakeWeChat, kb: KnowledgeBase) -> None:
    pushed = flask("menu", "push", **api(wechat))
    assert pushed.returncode == 0, pushed.stderr
    assert [b["name"] for b in wechat.menu["button"]] == [b.name for b in kb.menu.button]
    first = kb.menu.button[0].sub_button[0]
    assert wechat.menu["button"][0]["sub_button"][0] == {"type": "click", "name": first.name, "key": first.key}
    view = next(s for b in kb.menu.button for s in b.sub_button if s.url)
    assert {"type": "view", "name": view.name, "url": view.url} in [s for b in wechat.menu["button"] for s in b["sub_button"]]
    shown = flask("menu", "show", **api(wechat))
    assert shown.returncode == 0, shown.stderr
    assert first.name in shown.stdout and first.key in shown.stdout and view.url in shown.stdout
    raw = flask("menu", "show", "--json", **api(wechat))
    assert json.loads(raw.stdout)["menu"] == wechat.menu


@pytest.mark.parametrize("path, code, words", [("menu/create", 45064, "mini program"), ("menu/create", 40001, "WECHAT_APP_SECRET"),
                                               ("token", 40164, "whitelist")])
def test_push_errors_are_a_clear_message_and_a_non_zero_exit(wechat: FakeWeChat, path: str, code: int, words: str) -> None:
    wechat.errors[path] = code
    result = flask("menu", "push", **api(wechat))
    assert result.returncode != 0 and wechat.menu is None
    assert f"errcode {code}" in result.stderr and words in result.stderr
    assert "Traceback" not in result.stderr


def test_a_wrong_secret_and_an_empty_menu_on_show(wechat: FakeWeChat) -> None:
    wrong = flask("menu", "show", **api(wechat, secret="wrong"))
    assert wrong.returncode != 0 and "errcode 40001" in wrong.stderr and "Traceback" not in wrong.stderr
    empty = flask("menu", "show", **api(wechat))
    assert empty.returncode != 0 and "errcode 46003" in empty.stderr


def test_push_needs_the_app_credentials_and_a_reachable_api(wechat: FakeWeChat) -> None:
    missing = flask("menu", "push", WECHAT_API_BASE=wechat.base)
    assert missing.returncode != 0 and "WECHAT_APP_SECRET" in missing.stderr and wechat.calls == []
    down = flask("menu", "push", **{**api(wechat), "WECHAT_API_BASE": "http://127.0.0.1:9/cgi-bin/"})
    assert down.returncode != 0 and "cannot reach" in down.stderr and "Traceback" not in down.stderr


def test_an_invalid_menu_is_never_pushed(tmp_path: Path, wechat: FakeWeChat) -> None:
    folder = _menu_edit(tmp_path, LIMITS["four top buttons"][0])
    result = flask("menu", "push", knowledge=folder, **api(wechat))
    assert result.returncode != 0 and wechat.calls == []
