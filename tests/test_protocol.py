"""Protocol unit tests, on WeChat's own published vectors (../shared/wechat-notes.md)."""
from __future__ import annotations

import base64
import codecs
import xml.etree.ElementTree as ET

import pytest
from wechatpy.crypto import WeChatCrypto

from knowledge.paging import REPLY_LIMIT, utf8_len
from webhook.protocol import ProtocolError, cdata_safe, check_fresh, parse, seal, text_reply, verify_signature
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


# --- hardening: every input is decoded or refused with a 4xx ------------------------------------

def _plain_args(token: str = "test", timestamp: str = "1410685589", nonce: str = "test") -> dict[str, str]:
    return {"timestamp": timestamp, "nonce": nonce, "signature": signature(token, timestamp, nonce)}


@pytest.mark.parametrize(
    "timestamp, nonce",
    [("１４１０６８５５８９", "1"), ("1" * 13, "1"), ("-1", "1"), ("1.5", "1"), ("1", "]]></Nonce><Evil>1</Evil><Nonce><![CDATA["),
     ("1", "a" * 65), ("1", "nonce with spaces"), ("1", "ñ")],
)
def test_timestamp_and_nonce_are_checked_before_use(timestamp: str, nonce: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        verify_signature("test", _plain_args(timestamp=timestamp, nonce=nonce))
    assert refused.value.status == 400


@pytest.mark.parametrize("given", ["F21891DE399B4E33A1A93C9A7B8A8FFFB5A443FF", "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff"])
def test_signature_is_compared_in_any_case(given: str) -> None:
    verify_signature("test", {"signature": given, "timestamp": "1410685589", "nonce": "test"})


@pytest.mark.parametrize("bad", ["f21891de399b4e33a1a93c9a7b8a8fffb5a443f", "ｆ" * 40, "x" * 40, "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff0"])
def test_malformed_signatures_are_403(bad: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        verify_signature("test", {"signature": bad, "timestamp": "1410685589", "nonce": "test"})
    assert refused.value.status == 403


@pytest.mark.parametrize("skew, fresh", [(0, True), (-299, True), (299, True), (-301, False), (301, False), (-30 * 86400, False), (3600, False)])
def test_timestamps_outside_the_window_are_refused(skew: int, fresh: bool) -> None:
    now = 1_700_000_000
    args = {"timestamp": str(now + skew)}
    if fresh:
        check_fresh(args, 300, now=now)
    else:
        with pytest.raises(ProtocolError) as refused:
            check_fresh(args, 300, now=now)
        assert refused.value.status == 403 and "server time" in refused.value.reason


def test_plaintext_is_refused_when_a_key_is_configured_unless_allowed() -> None:
    crypto = WeChatCrypto(SAMPLE["token"], SAMPLE["key"], SAMPLE["appid"])
    body = message_xml(text_message("你好")).encode()
    with pytest.raises(ProtocolError) as refused:
        parse(body, {}, crypto, plaintext_ok=False)
    assert refused.value.status == 403
    assert parse(body, {}, crypto, plaintext_ok=True).message.content == "你好"
    assert parse(body, {}, None, plaintext_ok=False).message.content == "你好"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "gbk", "gb18030", "utf-8-sig", "bom-less utf-16-le", "bom-less utf-16-be"])
def test_bodies_in_other_encodings_are_decoded(encoding: str) -> None:
    xml = message_xml(text_message("学信网怎么注册"))
    if encoding in ("utf-16-le", "utf-16-be"):
        body = codecs.BOM_UTF16_LE + xml.encode(encoding) if encoding.endswith("le") else codecs.BOM_UTF16_BE + xml.encode(encoding)
    elif encoding.startswith("bom-less"):
        body = xml.encode(encoding.split()[1])
    elif encoding in ("utf-16", "utf-32", "utf-8-sig"):
        body = xml.encode(encoding)
    else:
        body = f'<?xml version="1.0" encoding="{encoding}"?>{xml}'.encode(encoding)
    assert parse(body, {}, None).message.content == "学信网怎么注册"


@pytest.mark.parametrize(
    "body",
    [
        '<?xml version="1.0" encoding="klingon"?><xml/>'.encode(),
        '<?xml version="1.0" encoding="utf-8"?><xml><Content>\xff</Content></xml>'.encode("latin-1"),
        b"<xml><Content>\x00</Content></xml>",
        '<?xml version="1.0" encoding="utf-16"?><xml/>'.encode(),  # declares UTF-16, is not
        '<?xml version="1.0" encoding="ascii"?><xml><Content>学</Content></xml>'.encode("utf-8"),
    ],
)
def test_undecodable_bodies_are_400(body: bytes) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse(body, {}, None)
    assert refused.value.status == 400


@pytest.mark.parametrize("field", ["MsgId", "CreateTime"])
@pytest.mark.parametrize("value", ["²", "①", "١٢٣", "１２３", "9" * 20000, "12a", "", "-5"])
def test_numeric_fields_must_be_a_sane_number_of_ascii_digits(field: str, value: str) -> None:
    fields = {**text_message("你好"), field: value}
    with pytest.raises(ProtocolError) as refused:
        parse(message_xml(fields).encode(), {}, None)
    assert refused.value.status == 400


@pytest.mark.parametrize("encrypt", ["!!!!", "====", "", "QUJD", "YWJj" * 11, base64.b64encode(b"x" * 48).decode(), base64.b64encode(bytes(range(256)) * 2).decode(), "a" * 10001])
def test_garbage_encrypt_is_400(encrypt: str) -> None:
    crypto = WeChatCrypto(SAMPLE["token"], SAMPLE["key"], SAMPLE["appid"])
    body = f"<xml><ToUserName>x</ToUserName><Encrypt>{encrypt}</Encrypt></xml>".encode()
    args = _sample_args(msg_signature=signature(SAMPLE["token"], SAMPLE["timestamp"], SAMPLE["nonce"], encrypt))
    with pytest.raises(ProtocolError) as refused:
        parse(body, args, crypto)
    assert refused.value.status == 400


def test_seal_refuses_an_unchecked_nonce() -> None:
    crypto = WeChatCrypto(SAMPLE["token"], SAMPLE["key"], SAMPLE["appid"])
    with pytest.raises(ValueError):
        seal("<xml/>", crypto, "]]></Nonce><Evil>1</Evil><Nonce><![CDATA[", "1409735669")
    envelope = ET.fromstring(seal("<xml/>", crypto, "1320562132", "1409735669"))
    assert [child.tag for child in envelope] == ["Encrypt", "MsgSignature", "TimeStamp", "Nonce"]


def test_subscribe_with_scene_is_read_as_wechatpy_does() -> None:
    body = message_xml({"ToUserName": "gh", "FromUserName": "o-a", "CreateTime": 1, "MsgType": "event", "Event": "subscribe", "EventKey": "qrscene_42"})
    inbound = parse(body.encode(), {}, None)
    assert inbound.message.event == "subscribe_scan" and inbound.message.scene_id == "42"


@pytest.mark.parametrize("msg_type", ["device_event", "device_text", "event"])
@pytest.mark.parametrize("event", ["", None])
def test_empty_or_missing_event_is_read_or_refused_never_raised(msg_type: str, event: str | None) -> None:
    """Found by tests/test_fuzz.py: ``<Event><![CDATA[]]></Event>`` on a device_event crashed the parser."""
    fields = {"ToUserName": "gh", "FromUserName": "o-a", "CreateTime": 1, "MsgType": msg_type}
    if event is not None:
        fields["Event"] = event
    body = message_xml(fields).encode()
    if msg_type == "event":
        with pytest.raises(ProtocolError) as refused:
            parse(body, {}, None)
        assert refused.value.status == 400
    else:
        assert parse(body, {}, None).msg_type == msg_type
