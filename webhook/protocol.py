"""The WeChat server protocol: signatures, the three encryption modes, message parsing, replies.

wechatpy does the cryptography and the message classes; this module adds what a
public endpoint needs around it: every refusal is a ``ProtocolError`` with an
HTTP status (never an exception that becomes a 500), XML with a DOCTYPE or
ENTITY is refused before any parser sees it, and a reply text is made safe for
CDATA and cut to what WeChat shows.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping
from xml.parsers.expat import ExpatError

import xmltodict
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.messages import BaseMessage
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

from knowledge.paging import REPLY_LIMIT, truncate

REQUIRED_FIELDS = ("ToUserName", "FromUserName", "CreateTime", "MsgType")
TEXT_FIELDS = ("Content", "Recognition", "EventKey", "Event")
_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class ProtocolError(Exception):
    """A request WeChat's protocol does not allow; ``status`` is the HTTP answer."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Inbound:
    """A parsed message; ``msg_type``/``event`` are WeChat's own (lower-cased), known to wechatpy or not."""

    message: BaseMessage
    encrypted: bool
    msg_type: str
    event: str | None

    @property
    def key(self) -> str:
        """The dedupe key: MsgId for messages; sender + CreateTime + Event + EventKey for events.

        A retry repeats all four, while two different taps in the same second differ in Event or EventKey.
        """
        if self.message.id:
            return f"msg:{self.message.id}"
        event_key = getattr(self.message, "key", None) or self.message._data.get("EventKey") or ""
        return f"event:{self.message.source}:{self.message.time}:{self.event or ''}:{event_key}"


def verify_signature(token: str, args: Mapping[str, str]) -> None:
    """Check the plain ``signature`` over token, timestamp and nonce (every GET and POST carries it)."""
    signature, timestamp, nonce = (args.get(k) for k in ("signature", "timestamp", "nonce"))
    if not (signature and timestamp and nonce):
        raise ProtocolError(400, "signature, timestamp and nonce are required")
    try:
        check_signature(token, signature, timestamp, nonce)
    except InvalidSignatureException:
        raise ProtocolError(403, "invalid signature") from None


def _refuse_declarations(xml: bytes) -> None:
    if _DECLARATION.search(xml):
        raise ProtocolError(400, "XML with DOCTYPE or ENTITY declarations is not accepted")


def _parse_xml(xml: bytes) -> dict:
    _refuse_declarations(xml)
    try:
        document = xmltodict.parse(xml, disable_entities=True)
    except (ExpatError, ValueError, UnicodeDecodeError):
        raise ProtocolError(400, "body is not well-formed XML") from None
    root = document.get("xml") if isinstance(document, dict) else None
    if not isinstance(root, dict):
        raise ProtocolError(400, "body is not a WeChat <xml> message")
    return root


def _decrypt(body: bytes, crypto: WeChatCrypto | None, args: Mapping[str, str]) -> bytes:
    if crypto is None:
        raise ProtocolError(400, "encrypted message but no EncodingAESKey is configured")
    fields = _parse_xml(body)
    if not isinstance(fields.get("Encrypt"), str):
        raise ProtocolError(400, "encrypted message without <Encrypt>")
    msg_signature = args.get("msg_signature")
    if not msg_signature:
        raise ProtocolError(400, "msg_signature is required in safe mode")
    try:
        plain = crypto.decrypt_message(fields, msg_signature, args["timestamp"], args["nonce"])
    except InvalidSignatureException:
        raise ProtocolError(403, "invalid msg_signature") from None
    except InvalidAppIdException:
        raise ProtocolError(403, "message is for another AppID") from None
    except (AssertionError, ValueError, TypeError, UnicodeDecodeError):
        raise ProtocolError(400, "Encrypt does not decrypt") from None
    return plain.encode("utf-8") if isinstance(plain, str) else plain


def parse(body: bytes, args: Mapping[str, str], crypto: WeChatCrypto | None) -> Inbound:
    """Turn a POST body into a wechatpy message, decrypting it first in safe/compatible mode."""
    if not body.strip():
        raise ProtocolError(400, "empty body")
    encrypted = args.get("encrypt_type", "raw").lower() == "aes"
    xml = _decrypt(body, crypto, args) if encrypted else body
    fields = _parse_xml(xml)
    missing = [name for name in REQUIRED_FIELDS if not isinstance(fields.get(name), str) or not fields[name].strip()]
    if missing:
        raise ProtocolError(400, f"message lacks {', '.join(missing)}")
    if not fields["CreateTime"].isdigit():
        raise ProtocolError(400, "CreateTime is not a number")
    if fields["MsgType"].lower() == "event" and not isinstance(fields.get("Event"), str):
        raise ProtocolError(400, "event message lacks Event")
    if "MsgId" in fields and not str(fields["MsgId"]).isdigit():
        raise ProtocolError(400, "MsgId is not a number")
    nested = [name for name in TEXT_FIELDS if fields.get(name) is not None and not isinstance(fields[name], str)]
    if nested:
        raise ProtocolError(400, f"{', '.join(nested)} must be text")
    event = fields.get("Event")
    return Inbound(parse_message(xml), encrypted, fields["MsgType"].lower(), event.lower() if isinstance(event, str) else None)


def cdata_safe(text: str) -> str:
    """Split ``]]>`` across two CDATA sections: wechatpy 1.8 puts text into CDATA unescaped."""
    return text.replace("]]>", "]]]]><![CDATA[>")


def text_reply(message: BaseMessage, text: str) -> str:
    """The reply XML for a text answer, never longer than WeChat shows."""
    return TextReply(message=message, content=cdata_safe(truncate(text, REPLY_LIMIT))).render()


def seal(reply_xml: str, crypto: WeChatCrypto, nonce: str, timestamp: str) -> str:
    """Encrypt a reply for safe mode, signed with the request's nonce and timestamp."""
    return crypto.encrypt_message(reply_xml, nonce, timestamp)
