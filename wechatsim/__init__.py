"""Play WeChat's server against a running bot: sign, encrypt, post, decode the reply.

Used by the end-to-end tests and the benchmarks, and by operators to smoke-test a
deployment (``python -m wechatsim URL TOKEN 问题``). The cryptography is
wechatpy's, the same library the bot uses, so this speaks the real protocol.
"""
from __future__ import annotations

import hashlib
import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

import requests
import xmltodict
from wechatpy.crypto import WeChatCrypto

_ids = itertools.count(int(time.time() * 1000) * 1000)


def signature(*parts: str) -> str:
    """WeChat's signature: sha1 over the sorted parts (token, timestamp, nonce[, Encrypt])."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def new_msg_id() -> int:
    return next(_ids)


def message_xml(fields: dict[str, Any]) -> str:
    body = "".join(f"<{k}><![CDATA[{v}]]></{k}>" if isinstance(v, str) else f"<{k}>{v}</{k}>" for k, v in fields.items())
    return f"<xml>{body}</xml>"


def text_message(content: str, openid: str = "o-student", msg_id: int | None = None, create_time: int | None = None) -> dict[str, Any]:
    return {
        "ToUserName": "gh_account",
        "FromUserName": openid,
        "CreateTime": create_time or int(time.time()),
        "MsgType": "text",
        "Content": content,
        "MsgId": msg_id or new_msg_id(),
    }


def event_message(event: str, openid: str = "o-student", create_time: int | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "ToUserName": "gh_account",
        "FromUserName": openid,
        "CreateTime": create_time or int(time.time()),
        "MsgType": "event",
        "Event": event,
        **extra,
    }


@dataclass
class Reply:
    status: int
    body: bytes
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def content(self) -> str | None:
        return self.fields.get("Content")


@dataclass
class WeChatServer:
    """One official account's view of the bot at ``url`` (e.g. http://127.0.0.1:5000/wechat)."""

    url: str
    token: str
    aes_key: str | None = None
    app_id: str | None = None
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def crypto(self) -> WeChatCrypto:
        return WeChatCrypto(self.token, self.aes_key, self.app_id)

    def query(self, timestamp: str | None = None, nonce: str | None = None) -> dict[str, str]:
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or secrets.token_hex(5)
        return {"timestamp": timestamp, "nonce": nonce, "signature": signature(self.token, timestamp, nonce)}

    def handshake(self, echostr: str, **overrides: str) -> requests.Response:
        return self.session.get(self.url, params={**self.query(), "echostr": echostr, **overrides}, timeout=10)

    def post_raw(self, body: bytes | str, params: dict[str, str], timeout: float = 10) -> requests.Response:
        data = body.encode("utf-8") if isinstance(body, str) else body
        return self.session.post(self.url, params=params, data=data, headers={"Content-Type": "text/xml"}, timeout=timeout)

    def send(self, fields: dict[str, Any], mode: str = "plain", timeout: float = 10, params: dict[str, str] | None = None) -> Reply:
        """Post a message in ``plain``, ``compat`` (plaintext fields + Encrypt) or ``safe`` mode; decode the reply."""
        query = params or self.query()
        xml = message_xml(fields)
        if mode == "plain":
            response = self.post_raw(xml, query, timeout)
            return self.decode(response)
        sealed = xmltodict.parse(self.crypto.encrypt_message(xml, query["nonce"], query["timestamp"]))["xml"]
        encrypt = sealed["Encrypt"]
        query = {**query, "encrypt_type": "aes", "msg_signature": signature(self.token, query["timestamp"], query["nonce"], encrypt)}
        if mode == "safe":
            body = f"<xml><ToUserName><![CDATA[{fields['ToUserName']}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        elif mode == "compat":
            body = xml.replace("</xml>", f"<Encrypt><![CDATA[{escape(encrypt)}]]></Encrypt></xml>")
        else:
            raise ValueError(f"unknown mode {mode!r}")
        return self.decode(self.post_raw(body, query, timeout))

    def decode(self, response: requests.Response) -> Reply:
        """Parse the reply; an encrypted one is checked (MsgSignature) and decrypted as WeChat would."""
        body = response.content
        if response.status_code != 200 or not body.startswith(b"<xml"):
            return Reply(response.status_code, body)
        fields = xmltodict.parse(body)["xml"]
        if "Encrypt" in fields:
            expected = signature(self.token, fields["TimeStamp"], fields["Nonce"], fields["Encrypt"])
            if expected != fields["MsgSignature"]:
                raise AssertionError("reply MsgSignature does not verify")
            plain = self.crypto.decrypt_message(fields, fields["MsgSignature"], fields["TimeStamp"], fields["Nonce"])
            fields = xmltodict.parse(plain)["xml"]
        return Reply(response.status_code, body, fields)
