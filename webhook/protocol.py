"""The WeChat server protocol: signatures, the three encryption modes, message parsing, replies.

wechatpy does the cryptography and the message classes; this module adds what a
public endpoint needs around it: every refusal is a ``ProtocolError`` with an
HTTP status (never an exception that becomes a 500). Everything from outside is
checked before it is used: ``timestamp``/``nonce`` for length and characters
(the nonce is copied into the encrypted reply's XML), the signature compared in
constant time, the body decoded from whatever encoding it declares (or refused),
XML with a DOCTYPE or ENTITY refused before any parser sees it, numeric fields
read only when they are a sane number of ASCII digits. The XML is parsed once
and the wechatpy message built from that parse. A reply text is made safe for
CDATA and cut to what WeChat shows.
"""
from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from typing import Any, Mapping
from xml.parsers.expat import ExpatError

import xmltodict
from wechatpy.crypto import WeChatCrypto
from wechatpy.events import EVENT_TYPES
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.messages import MESSAGE_TYPES, BaseMessage, UnknownMessage
from wechatpy.replies import TextReply

from knowledge.paging import REPLY_LIMIT, truncate

REQUIRED_FIELDS = ("ToUserName", "FromUserName", "CreateTime", "MsgType")
TEXT_FIELDS = ("Content", "Recognition", "EventKey", "Event")
_DECLARATION = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_XML_DECLARATION = re.compile(r"^\s*<\?xml\b[^>]*\?>")
_ENCODING = re.compile(rb"^\s*<\?xml\b[^>]*?\bencoding\s*=\s*[\"']([A-Za-z0-9._:-]{1,40})[\"']")
# What WeChat sends: a 10-digit Unix time, a numeric nonce, 40 hex digits. Allow some slack, nothing else.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SIGNATURE = re.compile(r"[0-9a-fA-F]{40}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
NAME_LIMIT = 128  # openids are 28 characters, account ids 15
MSG_ID_DIGITS = 20  # a 64-bit integer
CREATE_TIME_DIGITS = 11
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


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


def _sha1(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def _same(expected: str, given: str) -> bool:
    """Constant-time comparison, so response timing says nothing about how much of a signature was right."""
    return hmac.compare_digest(expected.encode("ascii"), given.lower().encode("ascii"))


def verify_signature(token: str, args: Mapping[str, str]) -> None:
    """Check the plain ``signature`` over token, timestamp and nonce (every GET and POST carries it).

    ``timestamp`` and ``nonce`` are checked for length and characters first: they end
    up in the encrypted reply's XML and in the replay check.
    """
    signature, timestamp, nonce = (args.get(k) for k in ("signature", "timestamp", "nonce"))
    if not (signature and timestamp and nonce):
        raise ProtocolError(400, "signature, timestamp and nonce are required")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise ProtocolError(400, "timestamp must be 1-12 ASCII digits")
    if not _NONCE.fullmatch(nonce):
        raise ProtocolError(400, "nonce must be 1-64 letters, digits, '-' or '_'")
    if not _SIGNATURE.fullmatch(signature) or not _same(_sha1(token, timestamp, nonce), signature):
        raise ProtocolError(403, "invalid signature")


def check_fresh(args: Mapping[str, str], window: float, now: float | None = None) -> None:
    """Refuse a replayed POST: WeChat signs with the current time, so an old (or future) timestamp is a copy.

    Call after ``verify_signature`` (which checked the timestamp is digits).
    """
    skew = int(args["timestamp"]) - (time.time() if now is None else now)
    if abs(skew) > window:
        raise ProtocolError(403, f"timestamp is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} server time "
                                 f"(more than {window:.0f} s): replayed or the clock is wrong")


def _encoding(xml: bytes) -> str:
    """A byte-order mark, then UTF-16's ``<`` pattern (XML's autodetection), then the declaration, else UTF-8."""
    for bom, name in BOMS:
        if xml.startswith(bom):
            return name
    if xml.startswith(b"<\x00"):
        return "utf-16-le"
    if xml.startswith(b"\x00<"):
        return "utf-16-be"
    declared = _ENCODING.match(xml)
    if declared:
        try:
            return codecs.lookup(declared.group(1).decode("ascii")).name
        except LookupError:
            raise ProtocolError(400, "the XML declares an unknown encoding") from None
    return "utf-8"


def _text(xml: bytes) -> str:
    """The body as text, in whatever encoding it is; undecodable is 400."""
    encoding = _encoding(xml)
    try:
        text = xml.decode(encoding)
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError(400, f"body is not valid {encoding}") from None
    # The declaration names the byte encoding, which no longer applies to the decoded text.
    return _XML_DECLARATION.sub("", text, count=1)


def _parse_xml(xml: bytes) -> dict:
    text = _text(xml)
    if "<!" in text and _DECLARATION.search(text):
        raise ProtocolError(400, "XML with DOCTYPE or ENTITY declarations is not accepted")
    try:
        document = xmltodict.parse(text, disable_entities=True)
    except (ExpatError, ValueError, UnicodeError):
        raise ProtocolError(400, "body is not well-formed XML") from None
    root = document.get("xml") if isinstance(document, dict) else None
    if not isinstance(root, dict):
        raise ProtocolError(400, "body is not a WeChat <xml> message")
    return root


def _decrypt(body: bytes, crypto: WeChatCrypto | None, args: Mapping[str, str]) -> bytes:
    if crypto is None:
        raise ProtocolError(400, "encrypted message but no EncodingAESKey is configured")
    fields = _parse_xml(body)
    encrypt = fields.get("Encrypt")
    if not isinstance(encrypt, str):
        raise ProtocolError(400, "encrypted message without <Encrypt>")
    msg_signature = args.get("msg_signature")
    if not msg_signature:
        raise ProtocolError(400, "msg_signature is required in safe mode")
    token, timestamp, nonce = crypto.token, args["timestamp"], args["nonce"]
    if not _SIGNATURE.fullmatch(msg_signature) or not _same(_sha1(token, timestamp, nonce, encrypt), msg_signature):
        raise ProtocolError(403, "invalid msg_signature")
    # AES-CBC with a 32-byte random prefix: anything that is not base64 of whole blocks cannot be WeChat's.
    if not _BASE64.fullmatch(encrypt) or len(encrypt) % 4:
        raise ProtocolError(400, "Encrypt is not base64")
    try:
        raw = base64.b64decode(encrypt, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(400, "Encrypt is not base64") from None
    if len(raw) < 32 or len(raw) % 16:
        raise ProtocolError(400, "Encrypt is not whole AES blocks")
    try:
        plain = crypto.decrypt_message(fields, msg_signature, timestamp, nonce)
    except InvalidSignatureException:
        raise ProtocolError(403, "invalid msg_signature") from None
    except InvalidAppIdException:
        raise ProtocolError(403, "message is for another AppID") from None
    except Exception:  # noqa: BLE001 - wechatpy's unpadding raises struct.error, IndexError, … on bad plaintext
        raise ProtocolError(400, "Encrypt does not decrypt") from None
    return plain.encode("utf-8") if isinstance(plain, str) else plain


def _digits(fields: Mapping[str, Any], name: str, most: int) -> None:
    value = fields.get(name)
    if not isinstance(value, str) or not (0 < len(value.strip()) <= most and value.strip().isascii() and value.strip().isdigit()):
        raise ProtocolError(400, f"{name} must be 1-{most} ASCII digits")
    fields[name] = value.strip()  # type: ignore[index]


def _message(fields: dict[str, Any]) -> BaseMessage:
    """wechatpy's ``parse_message`` from fields already parsed (it would parse the XML a second time)."""
    message_type = fields["MsgType"].lower()
    if message_type == "event" or message_type.startswith("device_"):
        event = fields.get("Event")  # an empty <Event/> parses as None
        event_type = event.lower() if isinstance(event, str) else None
        if event_type is None and message_type.startswith("device_"):
            event_type = message_type
        elif message_type.startswith("device_"):
            event_type = f"device_{event_type}"
        event_key = fields.get("EventKey")
        if event_type == "subscribe" and event_key:
            if event_key.startswith(("scanbarcode|", "scanimage|")):
                event_type = fields["Event"] = "subscribe_scan_product"
            elif event_key.startswith("qrscene_"):
                event_type = fields["Event"] = "subscribe_scan"
                fields["EventKey"] = event_key[len("qrscene_"):]
        return EVENT_TYPES.get(event_type, UnknownMessage)(fields)
    return MESSAGE_TYPES.get(message_type, UnknownMessage)(fields)


def parse(body: bytes, args: Mapping[str, str], crypto: WeChatCrypto | None, plaintext_ok: bool = True) -> Inbound:
    """Turn a POST body into a wechatpy message, decrypting it first in safe/compatible mode.

    With an EncodingAESKey configured a plaintext POST is refused unless ``plaintext_ok``
    (明文模式's signature does not cover the body, so a copied query string would let anyone post).
    """
    if not body.strip():
        raise ProtocolError(400, "empty body")
    encrypted = args.get("encrypt_type", "raw").lower() == "aes"
    if crypto is not None and not encrypted and not plaintext_ok:
        raise ProtocolError(403, "plaintext message refused: this bot expects 安全模式 (set ALLOW_PLAINTEXT=1 to switch over)")
    xml = _decrypt(body, crypto, args) if encrypted else body
    fields = _parse_xml(xml)
    missing = [name for name in REQUIRED_FIELDS if not isinstance(fields.get(name), str) or not fields[name].strip()]
    if missing:
        raise ProtocolError(400, f"message lacks {', '.join(missing)}")
    if max(len(fields["FromUserName"]), len(fields["ToUserName"])) > NAME_LIMIT:
        raise ProtocolError(400, f"FromUserName/ToUserName longer than {NAME_LIMIT}")
    _digits(fields, "CreateTime", CREATE_TIME_DIGITS)
    if fields["MsgType"].lower() == "event" and not isinstance(fields.get("Event"), str):
        raise ProtocolError(400, "event message lacks Event")
    if "MsgId" in fields:
        _digits(fields, "MsgId", MSG_ID_DIGITS)
    nested = [name for name in TEXT_FIELDS if fields.get(name) is not None and not isinstance(fields[name], str)]
    if nested:
        raise ProtocolError(400, f"{', '.join(nested)} must be text")
    message = _message(fields)
    event = fields.get("Event")
    return Inbound(message, encrypted, fields["MsgType"].lower(), event.lower() if isinstance(event, str) else None)


def cdata_safe(text: str) -> str:
    """Split ``]]>`` across two CDATA sections: wechatpy 1.8 puts text into CDATA unescaped."""
    return text.replace("]]>", "]]]]><![CDATA[>")


def text_reply(message: BaseMessage, text: str) -> str:
    """The reply XML for a text answer, never longer than WeChat shows."""
    return TextReply(message=message, content=cdata_safe(truncate(text, REPLY_LIMIT))).render()


def seal(reply_xml: str, crypto: WeChatCrypto, nonce: str, timestamp: str) -> str:
    """Encrypt a reply for safe mode, signed with the request's nonce and timestamp.

    wechatpy formats the nonce into the envelope's XML as it is: refuse anything but the
    characters ``verify_signature`` lets through, so no caller can inject markup.
    """
    if not (_NONCE.fullmatch(nonce) and _TIMESTAMP.fullmatch(timestamp)):
        raise ValueError("nonce/timestamp not validated")
    return crypto.encrypt_message(reply_xml, nonce, timestamp)
