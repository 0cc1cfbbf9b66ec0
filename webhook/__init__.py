"""The ``/wechat`` endpoint that the official account's 服务器配置 points at.

request → verify (signature, replay window) → parse (decrypt) → begin (one
Redis round trip: dedupe claim, rate count, session) → decide (handlers) →
reply (encrypt) → commit reply and effects together (one round trip) → one JSON
log line and the metrics. Every refusal is a 4xx with a short reason and a log
line; anything that goes wrong after parsing becomes the apology text, so WeChat
never sees a 500. A student over ``RATE_LIMIT`` messages a minute gets one
「慢一点」 reply, then ``success``; those messages are kept out of the statistics.
"""
from __future__ import annotations

import hashlib
import logging
import time

from flask import Blueprint, Response, request
from wechatpy.replies import TransferCustomerServiceReply

import bot
import handlers
import metrics
from state import Claim, Effects

from .protocol import Inbound, ProtocolError, check_fresh, parse, seal, text_reply, verify_signature

bp = Blueprint("webhook", __name__)
log = logging.getLogger("xueji.webhook")
SUCCESS = b"success"


def _plain(body: bytes | str, status: int = 200) -> Response:
    xml = isinstance(body, bytes) and body.startswith(b"<xml")
    return Response(body, status=status, mimetype="application/xml" if xml else "text/plain")


@bp.errorhandler(ProtocolError)
def refused(error: ProtocolError) -> Response:
    log.warning({"refused": error.status, "reason": error.reason, "method": request.method})
    metrics.refused(error.status)
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
    """One JSON line per message (no text, the openid hashed) and the same facts as metrics."""
    current = bot.current()
    kind = f"event:{inbound.event}" if inbound.event else inbound.msg_type
    seconds = time.perf_counter() - started
    available = current.store.available
    metrics.message(kind, outcome, seconds, degraded=not available)
    if log.isEnabledFor(logging.INFO):
        log.info({
            "user": _user_hash(inbound.message.source, current.config["SECRET_KEY"]),
            "type": kind[:40],
            "outcome": outcome,
            "topic": topic,
            "delivery": delivery,
            "redis": "up" if available else "down",
            "latency_ms": round(seconds * 1000, 2),
        })


def _limited(inbound: Inbound, claim: Claim, limit: int) -> handlers.Outcome | None:
    """Over the limit: the first message past it gets 「慢一点」, the rest nothing (unfollowing is never limited)."""
    if limit <= 0 or claim.sent <= limit or inbound.event == "unsubscribe":
        return None
    reply = bot.current().kb.text("slow_down") if claim.sent == limit + 1 else None
    return handlers.Outcome(reply=reply, effects=Effects(outcome="rate_limited"))


@bp.post("/wechat")
def receive() -> Response:
    started = time.perf_counter()
    current = bot.current()
    config = current.config
    verify_signature(config["WECHAT_TOKEN"], request.args)
    check_fresh(request.args, config["TIMESTAMP_WINDOW"])
    inbound = parse(request.get_data(), request.args, current.crypto, plaintext_ok=config["ALLOW_PLAINTEXT"])
    store = current.store
    openid = inbound.message.source

    claim, session = store.begin(inbound.key, openid)
    if claim.state == "done":
        _log(inbound, started, "duplicate", delivery="retry")
        return _plain(claim.body)
    if claim.state == "pending":
        claim, session = store.wait(inbound.key, openid, config["RETRY_WAIT"])
        if claim.state == "pending":
            _log(inbound, started, "duplicate_timeout", delivery="retry")
            return _plain(SUCCESS)
        if claim.state == "done":
            _log(inbound, started, "duplicate", delivery="retry")
            return _plain(claim.body)

    outcome = _limited(inbound, claim, config["RATE_LIMIT"]) or _decide(inbound, session)
    try:
        body = _render(inbound, outcome)
    except Exception:
        log.exception("reply could not be rendered")
        outcome = handlers.Outcome(reply=current.kb.text("error"), effects=Effects(outcome="error"))
        body = _render(inbound, outcome)
    store.commit(inbound.key, body, openid, outcome.effects)
    _log(inbound, started, outcome.effects.outcome, outcome.effects.topic)
    return _plain(body)
