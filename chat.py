"""``flask chat``: talk to the bot as a student, in the terminal, exactly as WeChat would show it.

Every line typed becomes a signed WeChat XML message posted through the whole
webhook (signature, parsing, dedupe, Redis session, reply XML), and the reply XML
is parsed back, so what is printed is what the student's phone would show.
Commands: ``/reset`` forgets the student's state, ``/click KEY`` taps a menu
button, ``/event subscribe`` follows, ``/quit`` ends (as does end of input).
"""
from __future__ import annotations

import secrets
import sys
import time
from typing import Any

import click
import xmltodict
from flask import current_app
from flask.testing import FlaskClient

import bot
from wechatsim import event_message, message_xml, signature, text_message

DEFAULT_OPENID = "o-chat-tester"
TRANSFERRED = "[transfer_customer_service: WeChat hands this message to 多客服]"
NO_REPLY = "[no reply: the bot answered \"success\"]"


class Chat:
    """One student's side of the conversation, posting through the app's own webhook."""

    def __init__(self, client: FlaskClient, token: str, openid: str):
        self.client, self.token, self.openid = client, token, openid
        self._last_time = 0

    def _time(self) -> int:
        """CreateTime, never repeated: two taps on the same button are two taps, not a WeChat retry."""
        self._last_time = max(int(time.time()), self._last_time + 1)
        return self._last_time

    def post(self, fields: dict[str, Any]) -> str:
        timestamp, nonce = str(int(time.time())), secrets.token_hex(5)
        query = {"timestamp": timestamp, "nonce": nonce, "signature": signature(self.token, timestamp, nonce)}
        response = self.client.post("/wechat", query_string=query, data=message_xml(fields).encode("utf-8"),
                                    content_type="text/xml")
        body = response.get_data()
        if response.status_code != 200:
            return f"[HTTP {response.status_code}: {body.decode('utf-8', 'replace')}]"
        if not body.startswith(b"<xml"):
            return NO_REPLY
        reply = xmltodict.parse(body)["xml"]
        if reply.get("MsgType") == "transfer_customer_service":
            return TRANSFERRED
        return reply.get("Content") or ""

    def say(self, text: str) -> str:
        return self.post(text_message(text, openid=self.openid, create_time=self._time()))

    def event(self, event: str, **extra: Any) -> str:
        return self.post(event_message(event, openid=self.openid, create_time=self._time(), **extra))

    def tap(self, key: str) -> str:
        return self.event("CLICK", EventKey=key)

    def reset(self) -> str:
        bot.current().store.forget(self.openid)
        return f"[state of {self.openid} cleared]"


def _show(reply: str) -> None:
    click.echo(reply)
    click.echo("")
    sys.stdout.flush()


@click.command("chat")
@click.option("--openid", default=DEFAULT_OPENID, show_default=True, help="The student to be (their state is kept in Redis).")
@click.option("--event", "event", type=click.Choice(["subscribe", "unsubscribe"]), help="Start with a follow or an unfollow.")
@click.option("--click", "click_key", metavar="KEY", help="Start with a tap on the menu button KEY.")
def chat(openid: str, event: str | None, click_key: str | None) -> None:
    """Chat with the bot as a student: each line is sent through the webhook, the reply printed."""
    app = current_app
    if not app.config["WECHAT_TOKEN"]:
        app.config["WECHAT_TOKEN"] = "chat-" + secrets.token_hex(8)
    bot.current()
    session = Chat(app.test_client(), app.config["WECHAT_TOKEN"], openid)
    interactive = sys.stdin.isatty()
    if interactive:
        click.echo(f"chatting as {openid}; /reset, /click KEY, /event subscribe, /quit")
    if event:
        _show(session.event(event))
    if click_key:
        _show(session.tap(click_key))
    while True:
        if interactive:
            click.echo("> ", nl=False)
        line = sys.stdin.readline()
        if not line:
            break
        text = line.strip()
        if not interactive:
            click.echo(f"> {text}")
        if not text:
            continue
        command, _, argument = text.partition(" ")
        if command == "/quit":
            break
        if command == "/reset":
            _show(session.reset())
        elif command == "/click" and argument:
            _show(session.tap(argument.strip()))
        elif command == "/event" and argument:
            _show(session.event(argument.strip()))
        else:
            _show(session.say(text))
