"""``flask menu …``: put ``knowledge/menu.yaml`` on the official account.

Once a server is enabled, WeChat switches the platform's own menu editor off, so
the menu is managed here: ``validate`` checks the platform's limits offline,
``push`` creates the menu through wechatpy's client (WECHAT_APP_ID and
WECHAT_APP_SECRET), ``show`` prints what the platform has now. ``WECHAT_API_BASE``
points the client elsewhere (tests run a local fake of the API).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import requests
from flask import current_app
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException

from knowledge.base import check
from knowledge.schema import Menu, MenuButton

menu_cli = click.Group("menu", help="Check knowledge/menu.yaml and push it to the official account.")

# What an operator should do about the errors a push or show meets most often.
HINTS = {
    40001: "the AppSecret is wrong or the access token is invalid: check WECHAT_APP_SECRET",
    40013: "the AppID is not valid: check WECHAT_APP_ID",
    40125: "the AppSecret is not valid: check WECHAT_APP_SECRET",
    40164: "this server's IP address is not on the account's IP whitelist (基本配置 → IP白名单)",
    45064: "a button links a mini program the account is not linked with",
    46003: "the account has no custom menu yet: run `flask menu push`",
    48001: "the account is not allowed to use the menu API (an unverified account?)",
}


class Client(WeChatClient):
    """wechatpy's client with a configurable API base, the access token fetched from the same base."""

    def __init__(self, appid: str, secret: str, base: str):
        self.API_BASE_URL = base if base.endswith("/") else base + "/"
        super().__init__(appid, secret, auto_retry=False, timeout=10)

    def fetch_access_token(self) -> dict:
        return self._fetch_access_token(
            url=self.API_BASE_URL + "token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )


def _button(button: MenuButton) -> dict[str, Any]:
    if button.sub_button:
        return {"name": button.name, "sub_button": [_button(b) for b in button.sub_button]}
    if button.url:
        return {"type": "view", "name": button.name, "url": button.url}
    return {"type": "click", "name": button.name, "key": button.key}


def wechat_menu(menu: Menu) -> dict[str, Any]:
    """The menu as WeChat's ``menu/create`` expects it (our entry/group/text targets stay on our side)."""
    return {"button": [_button(b) for b in menu.button]}


def _checked_menu() -> Menu:
    """The menu, or exit non-zero listing every problem of menu.yaml (or of the knowledge it points into)."""
    kb, problems = check(Path(current_app.config["KNOWLEDGE_DIR"]))
    menu_problems = [p for p in problems if p.file == "menu.yaml"]
    for problem in menu_problems:
        click.echo(str(problem), err=True)
    if menu_problems:
        raise SystemExit(f"menu.yaml: {len(menu_problems)} problem(s) found")
    if kb is None:
        for problem in problems:
            click.echo(str(problem), err=True)
        raise SystemExit("the knowledge base has problems, so the menu's keys cannot be checked: run `flask kb validate`")
    return kb.menu


def _client() -> Client:
    config = current_app.config
    if not config["WECHAT_APP_ID"] or not config["WECHAT_APP_SECRET"]:
        raise SystemExit("WECHAT_APP_ID and WECHAT_APP_SECRET must be set to use the WeChat API (see .env.example)")
    return Client(config["WECHAT_APP_ID"], config["WECHAT_APP_SECRET"], config["WECHAT_API_BASE"])


def _call(what: str, fn: Any) -> Any:
    """Run one API call; WeChat's refusal or an unreachable API becomes one clear line and a non-zero exit."""
    try:
        return fn()
    except WeChatClientException as exc:
        hint = HINTS.get(int(exc.errcode or 0), "see WeChat's global return codes")
        raise SystemExit(f"{what} failed: WeChat answered errcode {exc.errcode} ({exc.errmsg}): {hint}") from None
    except requests.RequestException as exc:
        raise SystemExit(f"{what} failed: cannot reach {current_app.config['WECHAT_API_BASE']} ({exc.__class__.__name__})") from None


@menu_cli.command("validate")
def validate() -> None:
    """Check the platform's limits (counts, name and key bytes) and that every click key answers something."""
    menu = _checked_menu()
    buttons = sum(1 + len(b.sub_button) for b in menu.button)
    click.echo(f"OK: {len(menu.button)} top-level buttons, {buttons} buttons in all")


@menu_cli.command("push")
def push() -> None:
    """Create the menu on the official account (replaces the one it has)."""
    menu = _checked_menu()
    client = _client()
    _call("menu push", lambda: client.menu.create(wechat_menu(menu)))
    click.echo(f"pushed: {len(menu.button)} top-level buttons to {client.appid}")


@menu_cli.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print WeChat's JSON as it came.")
def show(as_json: bool) -> None:
    """Print the menu the official account has now."""
    client = _client()
    result = _call("menu show", client.menu.get)
    if result is None:  # wechatpy turns errcode 46003 into None
        raise SystemExit(f"menu show: WeChat answered errcode 46003 (menu no exist): {HINTS[46003]}")
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
        return
    for top in (result.get("menu") or {}).get("button", []):
        click.echo(_describe(top))
        for sub in top.get("sub_button", []) or []:
            click.echo("  " + _describe(sub))


def _describe(button: dict[str, Any]) -> str:
    target = button.get("key") or button.get("url") or ""
    kind = button.get("type") or "menu"
    return f"{button.get('name', '')}  [{kind}{' ' + target if target else ''}]"
