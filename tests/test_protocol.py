"""Protocol unit tests, on WeChat's own published vectors (../shared/wechat-notes.md)."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from wechatpy.crypto import WeChatCrypto

from knowledge.paging import REPLY_LIMIT, utf8_len
from webhook.protocol import ProtocolError, cdata_safe, parse, text_reply, verify_signature
from wechatsim import message_xml, signature, text_message

SAMPLE = {
    "token": "spamtest",
    "key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    "appid": "wx2c2769f8efd9abc2",
    "timestamp": "1409735669",
    "nonce": "1320562132",
    "msg_signature": "5d197aaffba7e9b25a30732f161a50dee96bd5fa",
    "signature": "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a",
    "encrypt": "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=",
}
SAMPLE_BODY = (
    "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>"
    f"<Encrypt><![CDATA[{SAMPLE['encrypt']}]]></Encrypt></xml>"
).encode()


def _sample_args(**overrides: str) -> dict[str, str]:
    args = {k: SAMPLE[k] for k in ("timestamp", "nonce", "msg_signature", "signature")}
    return {**args, "encrypt_type": "aes", **overrides}


@pytest.mark.parametrize(
    "token, timestamp, nonce, expected",
    [
        ("test", "1410685589", "test", "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff"),
        ("AAAAA", "1714036504", "1514711492", "f464b24fc39322e44b38aa78f5edd27bd1441696"),
    ],
)
def test_plain_signature_vectors(token: str, timestamp: str, nonce: str, expected: str) -> None:
    assert signature(token, timestamp, nonce) == expected
    verify_signature(token, {"signature": expected, "timestamp": timestamp, "nonce": nonce})
    with pytest.raises(ProtocolError) as refused:
        verify_signature(token, {"signature": "0" * 40, "timestamp": timestamp, "nonce": nonce})
    assert refused.value.status == 403


def test_missing_signature_parameters_are_400() -> None:
    with pytest.raises(ProtocolError) as refused:
        verify_signature("test", {"timestamp": "1", "nonce": "x"})
    assert refused.value.status == 400


def test_official_safe_mode_sample_decrypts() -> None:
    crypto = WeChatCrypto(SAMPLE["token"], SAMPLE["key"], SAMPLE["appid"])
    verify_signature(SAMPLE["token"], _sample_args())
    inbound = parse(SAMPLE_BODY, _sample_args(), crypto)
    message = inbound.message
    assert inbound.encrypted and inbound.msg_type == "text"
    assert (message.source, message.target, message.content) == ("oyORnuP8q7ou2gfYjqLzSIWZf0rs", "gh_10f6c3c3ac5a", "abcdteT")
    assert message.id == 6054768590064713728 and message.time == 1409735668
    assert inbound.key == "msg:6054768590064713728"


def test_official_sample_with_wrong_appid_is_refused() -> None:
    crypto = WeChatCrypto(SAMPLE["token"], SAMPLE["key"], "wrongappid")
    with pytest.raises(ProtocolError) as refused:
        parse(SAMPLE_BODY, _sample_args(), crypto)
    assert refused.value.status == 403


def test_official_sample_with_wrong_msg_signature_is_refused() -> None:
    crypto = WeChatCrypto(SAMPLE["token"], SAMPLE["key"], SAMPLE["appid"])
    with pytest.raises(ProtocolError) as refused:
        parse(SAMPLE_BODY, _sample_args(msg_signature="0" * 40), crypto)
    assert refused.value.status == 403


def test_garbage_ciphertext_is_400_not_500() -> None:
    crypto = WeChatCrypto(SAMPLE["token"], SAMPLE["key"], SAMPLE["appid"])
    encrypt = "bm90IGEgcmVhbCBjaXBoZXJ0ZXh0"
    body = f"<xml><ToUserName>x</ToUserName><Encrypt>{encrypt}</Encrypt></xml>".encode()
    args = _sample_args(msg_signature=signature(SAMPLE["token"], SAMPLE["timestamp"], SAMPLE["nonce"], encrypt))
    with pytest.raises(ProtocolError) as refused:
        parse(body, args, crypto)
    assert refused.value.status == 400


def test_encrypted_message_without_configured_key_is_400() -> None:
    with pytest.raises(ProtocolError) as refused:
        parse(SAMPLE_BODY, _sample_args(), None)
    assert refused.value.status == 400


@pytest.mark.parametrize(
    "body",
    [
        b"not xml at all",
        b"<xml><ToUserName>unclosed",
        b'{"json": true}',
        b"<other><MsgType>text</MsgType></other>",
        b"<?xml version='1.0'?><!DOCTYPE xml [<!ENTITY a 'aaaa'>]><xml><Content>&a;</Content></xml>",
        b"<!doctype xml><xml/>",
        b"<xml><!ENTITY x SYSTEM 'file:///etc/passwd'></xml>",
        b"\xff\xfe\x00<",
        b"   ",
    ],
)
def test_malformed_bodies_are_400(body: bytes) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse(body, {}, None)
    assert refused.value.status == 400


@pytest.mark.parametrize("missing", ["ToUserName", "FromUserName", "CreateTime", "MsgType"])
def test_message_missing_a_required_field_is_400(missing: str) -> None:
    fields = text_message("你好")
    del fields[missing]
    with pytest.raises(ProtocolError) as refused:
        parse(message_xml(fields).encode(), {}, None)
    assert refused.value.status == 400 and missing in refused.value.reason


def test_event_key_is_sender_create_time_event_and_event_key() -> None:
    body = message_xml({"ToUserName": "gh", "FromUserName": "o-a", "CreateTime": 1700000000, "MsgType": "event", "Event": "subscribe"})
    inbound = parse(body.encode(), {}, None)
    assert inbound.event == "subscribe" and inbound.key == "event:o-a:1700000000:subscribe:"
    taps = [message_xml({"ToUserName": "gh", "FromUserName": "o-a", "CreateTime": 1700000000, "MsgType": "event",
                         "Event": "CLICK", "EventKey": key}) for key in ("MENU_A", "MENU_B", "MENU_A")]
    keys = [parse(tap.encode(), {}, None).key for tap in taps]
    assert keys[0] == keys[2] != keys[1]


def test_unknown_message_type_still_parses() -> None:
    body = message_xml({"ToUserName": "gh", "FromUserName": "o-a", "CreateTime": 1, "MsgType": "hologram", "MsgId": 5})
    inbound = parse(body.encode(), {}, None)
    assert inbound.msg_type == "hologram" and inbound.key == "msg:5"


def _reply_content(xml: str) -> str:
    return ET.fromstring(xml).findtext("Content")


def test_reply_with_cdata_terminator_is_valid_xml() -> None:
    inbound = parse(message_xml(text_message("q")).encode(), {}, None)
    text = "before ]]> middle ]]]]> after <a href=\"https://www.chsi.com.cn/\">学信网</a> & done"
    assert _reply_content(text_reply(inbound.message, text)) == text
    assert "]]>" not in cdata_safe("]]>").replace("]]]]><![CDATA[>", "")


def test_reply_never_exceeds_the_limit() -> None:
    inbound = parse(message_xml(text_message("q")).encode(), {}, None)
    content = _reply_content(text_reply(inbound.message, "学籍" * 2000))
    assert utf8_len(content) <= REPLY_LIMIT
    assert content.startswith("学籍学籍")
