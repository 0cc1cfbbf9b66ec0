"""Fuzzing the real app over HTTP: whatever arrives, the answer is a 2xx or 4xx, never a 5xx or a traceback.

Two apps: one in 明文模式 (no EncodingAESKey) and one in 安全模式 (a key, plaintext refused).
Hypothesis generates random and mutated XML, bodies in many encodings, query strings and
encrypted envelopes — validly signed where that gets the input past the signature check,
so the parser, the decryption and the handlers all see it. ``FUZZ_EXAMPLES`` sets the
examples per test (default 40, so the suite stays fast; run e.g. ``FUZZ_EXAMPLES=2000`` for
a long run).
"""
from __future__ import annotations

import base64
import os
import secrets
import time
import uuid
from typing import Iterator

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wechatpy.crypto import WeChatCrypto

from conftest import AES_KEY, APP_ID, TOKEN, LiveApp, drop_keys, start_app
from wechatsim import message_xml, signature

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "gbk", "gb18030", "big5", "latin-1",
             "shift_jis", "cp1252", "ascii", "klingon", "utf-7", "x-unknown", "UTF8"]
FIELDS = ["ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId", "Event", "EventKey", "Recognition",
          "MediaId", "PicUrl", "Location_X", "Location_Y", "Scale", "Label", "Encrypt", "Format", "Ticket"]
MSG_TYPES = ["text", "voice", "image", "event", "location", "link", "video", "shortvideo", "file", "device_event", "TEXT", ""]
EVENTS = ["subscribe", "unsubscribe", "CLICK", "VIEW", "SCAN", "LOCATION", "unknown", ""]


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[dict[str, LiveApp]]:
    # Two accounts, so two key spaces: sharing one, a message key both fuzzers happen to send (no MsgId,
    # same sender and second) would get the other mode's stored reply.
    prefixes = {name: f"test:{uuid.uuid4().hex[:10]}:" for name in ("plain", "safe")}
    started = {
        "plain": start_app(tmp_path_factory.mktemp("plain"), REDIS_URL=redis_url, REDIS_PREFIX=prefixes["plain"],
                           WECHAT_ENCODING_AES_KEY="", ALLOW_PLAINTEXT="0"),
        "safe": start_app(tmp_path_factory.mktemp("safe"), REDIS_URL=redis_url, REDIS_PREFIX=prefixes["safe"], ALLOW_PLAINTEXT="0"),
    }
    yield started
    for app in started.values():
        app.stop()
    for name, app in started.items():
        log = app.log_text()
        assert "Traceback" not in log and "unhandled error" not in log, f"{name} app logged an error:\n{log[-4000:]}"
    for prefix in prefixes.values():
        drop_keys(redis_url, prefix)


http = requests.Session()


def post(app: LiveApp, params: dict[str, str], body: bytes) -> requests.Response:
    response = http.post(f"{app.base}/wechat", params=params, data=body, headers={"Content-Type": "text/xml"}, timeout=10)
    assert response.status_code < 500, (params, body[:500], response.status_code, response.text[:500])
    return response


def signed(timestamp: str | None = None, nonce: str | None = None) -> dict[str, str]:
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or str(secrets.randbelow(10**10))
    return {"timestamp": timestamp, "nonce": nonce, "signature": signature(TOKEN, timestamp, nonce)}


def seal(plain: str | bytes, params: dict[str, str]) -> tuple[dict[str, str], bytes]:
    """Encrypt a (possibly broken) message as WeChat would and sign the envelope."""
    text = plain if isinstance(plain, str) else plain.decode("utf-8", "replace")
    encrypt = WeChatCrypto(TOKEN, AES_KEY, APP_ID)._encrypt_message(text, params["nonce"], params["timestamp"], crypto_class=_prp())
    encrypt = encrypt.split("<![CDATA[", 1)[1].split("]]>", 1)[0]
    return envelope(encrypt, params)


def _prp():  # wechatpy's PrpCrypto, as WeChatCrypto uses it
    from wechatpy.crypto import PrpCrypto

    return PrpCrypto


def envelope(encrypt: str, params: dict[str, str]) -> tuple[dict[str, str], bytes]:
    query = {**params, "encrypt_type": "aes", "msg_signature": signature(TOKEN, params["timestamp"], params["nonce"], encrypt)}
    return query, f"<xml><ToUserName><![CDATA[gh]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>".encode()


# --- strategies --------------------------------------------------------------------------------

any_text = st.text(max_size=60)
digits_or_not = st.one_of(st.integers(min_value=-10, max_value=10**25).map(str), st.text(alphabet="0123456789²①١１٣ -+.e", max_size=30),
                          st.just("9" * 20000))
field_values = st.one_of(any_text, digits_or_not, st.sampled_from(MSG_TYPES), st.sampled_from(EVENTS))


@st.composite
def messages(draw: st.DrawFn) -> str:
    """A message-shaped XML document with random fields and values (some valid, most not)."""
    fields: dict[str, object] = {
        "ToUserName": "gh_account",
        "FromUserName": draw(st.one_of(st.just(f"o-fuzz-{draw(st.integers(0, 50))}"), any_text)),
        "CreateTime": draw(st.one_of(st.just(str(int(time.time()))), digits_or_not)),
        "MsgType": draw(st.sampled_from(MSG_TYPES)),
    }
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=6)):
        fields[name] = draw(field_values)
    if draw(st.booleans()):
        fields["MsgId"] = draw(st.one_of(st.integers(1, 2**64).map(str), digits_or_not))
    if fields["MsgType"] == "event" and draw(st.booleans()):
        fields["Event"] = draw(st.sampled_from(EVENTS))
    for name in draw(st.lists(st.sampled_from(list(fields)), max_size=2)):
        fields.pop(name, None)
    return message_xml(fields)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A message with bytes inserted, deleted or replaced, declarations added, in some encoding."""
    xml = draw(messages())
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(xml)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.one_of(any_text, st.sampled_from(["<", ">", "]]>", "<![CDATA[", "&", "&amp;", "&#0;", "<xml>", "</xml>", "<!DOCTYPE x>",
                                                          "<!ENTITY a 'b'>", "\x00", "\ufeff", "<?xml version='1.0'?>", "<a><b>"])))
        end = min(len(xml), at + draw(st.integers(0, 10)))
        xml = xml[:at] + piece + xml[at:] if action == "insert" else xml[:at] + xml[end:] if action == "delete" else xml[:at] + piece + xml[end:]
    encoding = draw(st.sampled_from(ENCODINGS))
    if draw(st.booleans()):
        xml = f'<?xml version="1.0" encoding="{encoding}"?>' + xml
    try:
        return xml.encode(encoding, errors=draw(st.sampled_from(["strict", "replace", "ignore"])))
    except (LookupError, UnicodeError):
        return xml.encode("utf-8", errors="surrogatepass")


bodies = st.one_of(st.binary(max_size=300), mutated(), messages().map(lambda x: x.encode()))
query_values = st.one_of(st.text(max_size=50), st.sampled_from(["aes", "raw", "AES", ""]), st.text(alphabet="0123456789abcdef", min_size=40, max_size=40))


# --- tests -------------------------------------------------------------------------------------

@FUZZ
@given(mode=st.sampled_from(["plain", "safe"]), body=bodies)
def test_signed_plaintext_posts_never_500(apps: dict[str, LiveApp], mode: str, body: bytes) -> None:
    response = post(apps[mode], signed(), body)
    if mode == "safe":
        assert response.status_code in (400, 403, 413)


@FUZZ
@given(mode=st.sampled_from(["plain", "safe"]), params=st.dictionaries(
    st.sampled_from(["signature", "timestamp", "nonce", "encrypt_type", "msg_signature", "echostr", "openid", "x"]), query_values, max_size=7),
    keep_signature=st.booleans(), body=bodies)
def test_random_query_strings_never_500(apps: dict[str, LiveApp], mode: str, params: dict[str, str], keep_signature: bool, body: bytes) -> None:
    if keep_signature and {"timestamp", "nonce"} <= set(params):
        params["signature"] = signature(TOKEN, params["timestamp"], params["nonce"])
    post(apps[mode], params, body)
    response = http.get(f"{apps[mode].base}/wechat", params=params, timeout=10)
    assert response.status_code < 500


@FUZZ
@given(encrypt=st.one_of(st.text(max_size=200), st.binary(min_size=0, max_size=400).map(lambda b: base64.b64encode(b).decode()),
                         st.sampled_from(["!!!!", "====", "", "QUJD", "a" * 4000])))
def test_garbage_encrypt_never_500(apps: dict[str, LiveApp], encrypt: str) -> None:
    query, body = envelope(encrypt, signed())
    assert post(apps["safe"], query, body).status_code in (400, 403, 413)


@FUZZ
@given(plain=st.one_of(messages(), mutated().map(lambda b: b.decode("utf-8", "replace"))),
       nonce=st.one_of(st.just(None), st.text(min_size=1, max_size=80)))
def test_encrypted_envelopes_of_fuzzed_messages_never_500(apps: dict[str, LiveApp], plain: str, nonce: str | None) -> None:
    params = signed(nonce=nonce)
    query, body = seal(plain, params)
    response = post(apps["safe"], query, body)
    if response.status_code == 200 and response.content.startswith(b"<xml"):
        # A nonce gets into the reply envelope only once checked: the envelope has exactly its four fields.
        assert response.content.count(b"<Nonce>") == 1 and b"<Evil" not in response.content
