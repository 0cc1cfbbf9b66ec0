"""The ``/wechat`` endpoint that the official account's 服务器配置 points at.

request → verify → parse (decrypt) → dedupe → decide (handlers) → reply
(encrypt) → store reply and effects together → one log line. Every refusal is
a 4xx with a short reason; anything that goes wrong after parsing becomes the
apology text, so WeChat never sees a 500.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time

from flask import Blueprint, Response, request
from wechatpy.replies import TransferCustomerServiceReply

import bot
import handlers
from state import Effects

from .protocol import Inbound, ProtocolError, parse, seal, text_reply, verify_signature

bp = Blueprint("webhook", __name__)
log = logging.getLogger("xueji.webhook")
SUCCESS = b"success"


def _plain(body: bytes | str, status: int = 200) -> Response:
    xml = isinstance(body, bytes) and body.startswith(b"<xml")
    return Response(body, status=status, mimetype="application/xml" if xml else "text/plain")


@bp.errorhandler(ProtocolError)
def refused(error: ProtocolError) -> Response:
    return _plain(error.reason, error.status)


@bp.get("/wechat")
def handshake() -> Response:
    """服务器配置 verification: echo ``echostr`` when the signature is right."""
    verify_signature(bot.current().config["WECHAT_TOKEN"], request.args)
    echostr = request.args.get("echostr")
    if not echostr:
        raise ProtocolError(400, "echostr is required")
    return _plain(echostr)


def _user_hash(openid: str, secret: str) -> str:
    return hashlib.sha256(f"{secret}:{openid}".encode()).hexdigest()[:16]


def _decide(inbound: Inbound, session: dict) -> handlers.Outcome:
    current = bot.current()
    kb, matcher = current.knowledge_pair  # once: a reload may swap them at any moment
    ctx = handlers.Context(kb=kb, matcher=matcher, session=session, stateful=current.store.available,
                           handoff=current.config["HUMAN_HANDOFF"])
    try:
        return handlers.dispatch(inbound.msg_type, inbound.event, inbound.message, ctx)
    except Exception:
        log.exception("handler failed for a %s message", inbound.msg_type)
        return handlers.Outcome(reply=kb.text("error"), effects=Effects(outcome="error"))


def _render(inbound: Inbound, outcome: handlers.Outcome) -> bytes:
    if outcome.transfer:
        xml = TransferCustomerServiceReply(message=inbound.message).render()
    elif outcome.reply is None:
        return SUCCESS
    else:
        xml = text_reply(inbound.message, outcome.reply)
    if inbound.encrypted:
        xml = seal(xml, bot.current().crypto, request.args["nonce"], request.args["timestamp"])
    return xml.encode("utf-8")


def _log(inbound: Inbound, started: float, outcome: str, topic: str | None = None, delivery: str = "first") -> None:
    current = bot.current()
    log.info(json.dumps({
        "user": _user_hash(inbound.message.source, current.config["SECRET_KEY"]),
        "type": f"event:{inbound.event}" if inbound.event else inbound.msg_type,
        "outcome": outcome,
        "topic": topic,
        "delivery": delivery,
        "redis": "up" if current.store.available else "down",
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }, ensure_ascii=False))


@bp.post("/wechat")
def receive() -> Response:
    started = time.perf_counter()
    current = bot.current()
    verify_signature(current.config["WECHAT_TOKEN"], request.args)
    inbound = parse(request.get_data(), request.args, current.crypto)
    store = current.store

    claim = store.claim(inbound.key)
    if claim.state == "done":
        _log(inbound, started, "duplicate", delivery="retry")
        return _plain(claim.body)
    if claim.state == "pending":
        body = store.wait_for_reply(inbound.key, current.config["RETRY_WAIT"])
        _log(inbound, started, "duplicate" if body else "duplicate_timeout", delivery="retry")
        return _plain(body or SUCCESS)

    openid = inbound.message.source
    outcome = _decide(inbound, store.session(openid))
    try:
        body = _render(inbound, outcome)
    except Exception:
        log.exception("reply could not be rendered")
        outcome = handlers.Outcome(reply=current.kb.text("error"), effects=Effects(outcome="error"))
        body = _render(inbound, outcome)
    store.commit(inbound.key, body, openid, outcome.effects)
    _log(inbound, started, outcome.effects.outcome, outcome.effects.topic)
    return _plain(body)
