"""All shared state, and the only module that talks to Redis.

Every key the bot writes is listed here, with its shape and lifetime. All keys
start with the configured prefix (``REDIS_PREFIX``, default ``xueji:``), so
several bots or test runs can share one Redis server.

=====================  ======  =============================================  ===========================
key                    type    value                                          TTL
=====================  ======  =============================================  ===========================
dedupe:<message key>   string  ``PENDING`` while the first delivery is being  ``PENDING_TTL`` (8 s), then
                               answered, then the exact HTTP reply body       ``DEDUPE_TTL`` (60 s)
session:<openid>       string  JSON: what a follow-up message refers to       ``SESSION_TTL`` (idle,
                               (pages left of the last answer, the numbered   default 30 min)
                               list last sent, the question waiting for the
                               audience, the last answer for 「没用」, the
                               count of fallbacks in a row, the 多客服 flag)
audience:<openid>      string  the student's remembered audience (a key of     ``AUDIENCE_TTL`` (180 days)
                               school.yaml ``audiences``)
stats:<yyyymmdd>       hash    ``outcome:<outcome>``, ``topic:<id>`` and      ``STATS_TTL`` (400 days)
                               ``feedback:<id>`` (「没用」 after that answer) →
                               message counts for that day
unanswered:<yyyymmdd>  list    questions the bot could not answer, newest     ``UNANSWERED_TTL`` (90 days)
                               first, capped at ``UNANSWERED_CAP``
=====================  ======  =============================================  ===========================

A message key is ``MsgId`` for messages and ``<FromUserName>:<CreateTime>:<Event>:<EventKey>``
for events (which have no MsgId), as WeChat retries both up to three times.

``STUDENT_KEYS`` names every per-student key kind (``<kind>:<openid>``): an
unfollow deletes them all; the aggregate ``stats`` and ``unanswered`` stay.

Redis is optional at run time: when it does not answer, every call returns a
neutral default at once (no dedupe, empty session, nothing recorded), a
warning is logged once, and the next try happens after ``RETRY_AFTER`` seconds,
so an outage costs one short timeout per second, not one per message. An
embedded server is restarted by the same probe.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from embedded_redis import EmbeddedRedis

log = logging.getLogger(__name__)
T = TypeVar("T")

PENDING = b"\x00pending"
PENDING_TTL = 8
DEDUPE_TTL = 60
STATS_TTL = 400 * 86400
UNANSWERED_TTL = 90 * 86400
UNANSWERED_CAP = 500
AUDIENCE_TTL = 180 * 86400
STUDENT_KEYS = ("session", "audience", "rate")
RETRY_AFTER = 1.0
POLL_INTERVAL = 0.05


def connect(url: str, timeout: float) -> redis.Redis:
    """A client that fails fast: short timeouts, no retries (the Store decides what a failure means)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


@dataclass(frozen=True)
class Claim:
    """What the dedupe record says about a delivery: ``first``, ``pending`` or ``done`` (with its reply)."""

    state: str
    body: bytes | None = None


@dataclass
class Effects:
    """What answering one message changes, written together with its reply so a retry repeats none of it."""

    outcome: str
    topic: str | None = None
    session: dict[str, Any] | None = None
    forget: bool = False
    unanswered: str | None = None
    audience: str | None = None  # None = unchanged, "" = forget, else remember this audience
    feedback: str | None = None  # entry id the student said did not help
    unanswered_kind: str = "fallback"  # "fallback" | "clarify" | "feedback"


@dataclass
class Store:
    client: redis.Redis
    prefix: str = "xueji:"
    session_ttl: int = 1800
    embedded: EmbeddedRedis | None = None
    _down_until: float = field(default=0.0, repr=False)
    _down: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def key(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}:{name}"

    @property
    def available(self) -> bool:
        """False while in stateless degradation (Redis did not answer within the last second)."""
        return not self._down

    def _call(self, what: str, fn: Callable[[], T], default: T) -> T:
        if self._down and time.monotonic() < self._down_until:
            return default
        try:
            result = fn()
        except (redis.RedisError, OSError) as exc:
            self._mark_down(what, exc)
            return default
        if self._down:
            self._down = False
            log.warning("redis is answering again: stateful mode restored")
        return result

    def _mark_down(self, what: str, exc: Exception) -> None:
        with self._lock:
            self._down_until = time.monotonic() + RETRY_AFTER
            if not self._down:
                self._down = True
                log.warning("redis unavailable during %s (%s): answering statelessly", what, exc.__class__.__name__)
        if self.embedded is not None:
            threading.Thread(target=self.embedded.ensure_running, daemon=True).start()

    def ping(self) -> bool:
        """Ask Redis now, even while degraded: the health check wants the truth."""
        self._down_until = 0.0
        return self._call("ping", self.client.ping, False)

    def claim(self, message_key: str) -> Claim:
        """Mark a delivery as being answered, or report the earlier delivery's state."""
        key = self.key("dedupe", message_key)

        def run() -> Claim:
            if self.client.set(key, PENDING, nx=True, ex=PENDING_TTL):
                return Claim("first")
            body = self.client.get(key)
            if body is None:
                return Claim("first") if self.client.set(key, PENDING, nx=True, ex=PENDING_TTL) else Claim("pending")
            return Claim("pending") if body == PENDING else Claim("done", body)

        return self._call("claim", run, Claim("first"))

    def wait_for_reply(self, message_key: str, timeout: float) -> bytes | None:
        """Poll for the reply another worker is computing; None if it is not there in time."""
        key = self.key("dedupe", message_key)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self._call("wait", lambda: self.client.get(key), None)
            if body is None and not self.available:
                return None
            if body is not None and body != PENDING:
                return body
            time.sleep(POLL_INTERVAL)
        return None

    def session(self, openid: str) -> dict[str, Any]:
        """The student's session with ``"audience"`` merged in from its own long-lived key (one MGET)."""
        keys = [self.key("session", openid), self.key("audience", openid)]
        raw, audience = self._call("session", lambda: self.client.mget(keys), [None, None])
        try:
            session = json.loads(raw) if raw else {}
        except ValueError:
            session = {}
        if not isinstance(session, dict):
            session = {}
        session.pop("audience", None)
        if audience:
            session["audience"] = audience.decode("utf-8", errors="replace")
        return session

    def forget(self, openid: str) -> None:
        """Delete every per-student key (``STUDENT_KEYS``): what an unfollow or ``/reset`` in ``flask chat`` asks."""
        self._call("forget", lambda: self.client.delete(*(self.key(kind, openid) for kind in STUDENT_KEYS)), None)

    def commit(self, message_key: str | None, body: bytes, openid: str, effects: Effects, today: dt.date | None = None) -> None:
        """Store the reply for retries and apply the message's effects in one transaction."""
        day = (today or dt.date.today()).strftime("%Y%m%d")

        def run() -> None:
            pipe = self.client.pipeline(transaction=True)
            if message_key is not None:
                pipe.set(self.key("dedupe", message_key), body, ex=DEDUPE_TTL)
            session_key = self.key("session", openid)
            session = {k: v for k, v in (effects.session or {}).items() if k != "audience"}
            if effects.forget:
                pipe.delete(*(self.key(kind, openid) for kind in STUDENT_KEYS))
            elif effects.session is not None:
                if session:
                    pipe.set(session_key, json.dumps(session, ensure_ascii=False), ex=self.session_ttl)
                else:
                    pipe.delete(session_key)
            if not effects.forget and effects.audience is not None:
                if effects.audience:
                    pipe.set(self.key("audience", openid), effects.audience, ex=AUDIENCE_TTL)
                else:
                    pipe.delete(self.key("audience", openid))
            stats_key = self.key("stats", day)
            pipe.hincrby(stats_key, f"outcome:{effects.outcome}", 1)
            if effects.topic:
                pipe.hincrby(stats_key, f"topic:{effects.topic}", 1)
            if effects.feedback:
                pipe.hincrby(stats_key, f"feedback:{effects.feedback}", 1)
            pipe.expire(stats_key, STATS_TTL)
            if effects.unanswered:
                unanswered_key = self.key("unanswered", day)
                pipe.lpush(unanswered_key, effects.unanswered)
                pipe.ltrim(unanswered_key, 0, UNANSWERED_CAP - 1)
                pipe.expire(unanswered_key, UNANSWERED_TTL)
            pipe.execute()

        self._call("commit", run, None)

    def stats(self, day: dt.date) -> dict[str, int]:
        raw = self._call("stats", lambda: self.client.hgetall(self.key("stats", day.strftime("%Y%m%d"))), {})
        return {k.decode(): int(v) for k, v in raw.items()}

    def unanswered(self, day: dt.date) -> list[str]:
        raw = self._call("unanswered", lambda: self.client.lrange(self.key("unanswered", day.strftime("%Y%m%d")), 0, -1), [])
        return [item.decode() for item in raw]
