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
                               candidates of a clarify list, the audience)
stats:<yyyymmdd>       hash    ``outcome:<outcome>`` and ``topic:<id>`` →     ``STATS_TTL`` (400 days)
                               message counts for that day
unanswered:<yyyymmdd>  list    questions the bot could not answer, newest     ``UNANSWERED_TTL`` (90 days)
                               first, capped at ``UNANSWERED_CAP``
rate:<openid>          string  messages the student sent in the current       ``RATE_WINDOW`` (60 s) from
                               window (rate limit, ``RATE_LIMIT``)            the window's first message
=====================  ======  =============================================  ===========================

Per message the bot makes two round trips: ``begin`` (one Lua script: claim the
delivery, count it against the student's rate limit, read the session and the
remembered audience) before deciding, ``commit`` (one MULTI/EXEC pipeline:
reply, session, statistics) after.

A message key is ``MsgId`` for messages and ``<FromUserName>:<CreateTime>`` for
events (which have no MsgId), as WeChat retries both up to three times.

Redis is optional at run time: when it does not answer, every call returns a
neutral default at once (no dedupe, empty session, nothing recorded), a
warning is logged once, and the next try happens after ``RETRY_AFTER`` seconds,
so an outage costs one short timeout per second, not one per message. An
embedded server is restarted by the same probe. A claim that reaches Redis only
after the bot gave up waiting for it (a stalled server that catches up) is not
written, so it cannot leave a ``PENDING`` that makes WeChat's retry wait for a
reply nobody is computing: the script compares Redis's clock with the deadline
the bot sent, measured in Redis's clock (``sync_clock``).
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

PENDING = b"\x00pending:"  # followed by the Redis time (ms) of the claim
PENDING_TTL = 8
ORPHAN_AFTER = 2.0  # seconds: answering takes milliseconds, a PENDING this old will never be replaced
DEDUPE_TTL = 60
STATS_TTL = 400 * 86400
UNANSWERED_TTL = 90 * 86400
UNANSWERED_CAP = 500
RETRY_AFTER = 1.0
POLL_INTERVAL = 0.05
RATE_WINDOW = 60
LATE_SLACK_MS = 5  # for the error of the clock offset (half a round trip)
CLOCK_RESYNC = 60.0  # seconds between measurements of Redis's clock (NTP may slew either clock)
# Outcomes kept out of the statistics and the unanswered list: a flood must not fill them.
UNCOUNTED = frozenset({"rate_limited"})

# KEYS: dedupe, session, audience, rate. ARGV: pending marker, pending TTL (ms), deadline (ms, Redis
# clock), rate window (s; 0 = this is only a claim, read nothing else), orphan age (ms).
# A PENDING record holds the Redis time it was written; one older than the orphan age belongs to a
# delivery that will never commit (its worker died, or its claim arrived after it had given up) and
# is taken over.
BEGIN_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now > tonumber(ARGV[3]) then
  return {'late'}
end
local marker = ARGV[1]
local claimed = redis.call('SET', KEYS[1], marker .. now, 'NX', 'PX', ARGV[2])
if not claimed then
  local body = redis.call('GET', KEYS[1])
  if string.sub(body, 1, #marker) ~= marker then
    return {'done', body}
  end
  if now - (tonumber(string.sub(body, #marker + 1)) or 0) <= tonumber(ARGV[5]) then
    return {'pending'}
  end
  redis.call('SET', KEYS[1], marker .. now, 'PX', ARGV[2])
end
local window = tonumber(ARGV[4])
if window == 0 then
  return {'first'}
end
local sent = redis.call('INCR', KEYS[4])
if sent == 1 then
  redis.call('EXPIRE', KEYS[4], window)
end
return {'first', sent, redis.call('GET', KEYS[2]), redis.call('GET', KEYS[3])}
"""


def connect(url: str, timeout: float) -> redis.Redis:
    """A client that fails fast: short timeouts, no retries (the Store decides what a failure means)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


def _decode_session(raw: bytes | None) -> dict[str, Any]:
    try:
        session = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return session if isinstance(session, dict) else {}


@dataclass(frozen=True)
class Claim:
    """What the dedupe record says about a delivery: ``first``, ``pending`` or ``done`` (with its reply)."""

    state: str
    body: bytes | None = None
    sent: int = 0  # the student's messages in the current rate window, this one included (0: not counted)


@dataclass
class Effects:
    """What answering one message changes, written together with its reply so a retry repeats none of it."""

    outcome: str
    topic: str | None = None
    session: dict[str, Any] | None = None
    forget: bool = False
    unanswered: str | None = None


@dataclass
class Store:
    client: redis.Redis
    prefix: str = "xueji:"
    session_ttl: int = 1800
    embedded: EmbeddedRedis | None = None
    on_error: Callable[[str], None] | None = None  # told of every failed call (metrics)
    _down_until: float = field(default=0.0, repr=False)
    _down: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _clock_offset_ms: float = field(default=0.0, repr=False)
    _clock_synced_at: float = field(default=float("-inf"), repr=False)
    _timeout_ms: float = field(default=250.0, repr=False)

    def __post_init__(self) -> None:
        self._begin = self.client.register_script(BEGIN_SCRIPT)
        timeout = self.client.connection_pool.connection_kwargs.get("socket_timeout")
        self._timeout_ms = (timeout or 0.25) * 1000

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
        if self.on_error is not None:
            self.on_error(what)
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
        return self._call("ping", self.client.ping, False) and self.sync_clock()

    def sync_clock(self) -> bool:
        """Measure Redis's clock against ours, so ``begin`` can send a deadline Redis understands."""

        def run() -> bool:
            before = time.time()
            seconds, micros = self.client.time()
            after = time.time()
            self._clock_offset_ms = (seconds + micros / 1e6 - (before + after) / 2) * 1000
            self._clock_synced_at = time.monotonic()
            return True

        return self._call("time", run, False)

    def begin(self, message_key: str, openid: str | None) -> tuple[Claim, dict[str, Any]]:
        """One round trip before deciding: claim the delivery, count it, read the session and audience.

        The session dict has the remembered audience (``audience:<openid>``) merged in as
        ``"audience"``. Without an ``openid`` only the claim is made.
        """
        if time.monotonic() - self._clock_synced_at > CLOCK_RESYNC:
            self.sync_clock()
        keys = [self.key("dedupe", message_key), self.key("session", openid or ""), self.key("audience", openid or ""),
                self.key("rate", openid or "")]
        deadline = time.time() * 1000 + self._clock_offset_ms + self._timeout_ms + LATE_SLACK_MS
        args = [PENDING, PENDING_TTL * 1000, int(deadline), RATE_WINDOW if openid else 0, int(ORPHAN_AFTER * 1000)]

        def run() -> tuple[Claim, dict[str, Any]]:
            reply = self._begin(keys=keys, args=args)
            kind = reply[0].decode()
            if kind == "late":  # Redis was slow, or a clock was stepped: measure again before the next claim
                self._clock_synced_at = float("-inf")
            if kind == "done":
                return Claim("done", reply[1]), {}
            if kind != "first":
                return Claim("first" if kind == "late" else kind), {}
            if len(reply) == 1:
                return Claim("first"), {}
            session = _decode_session(reply[2])
            if reply[3] is not None:
                session["audience"] = reply[3].decode("utf-8", "replace")
            return Claim("first", sent=int(reply[1])), session

        return self._call("claim", run, (Claim("first"), {}))

    def claim(self, message_key: str) -> Claim:
        """Mark a delivery as being answered, or report the earlier delivery's state."""
        return self.begin(message_key, None)[0]

    def wait(self, message_key: str, openid: str | None, timeout: float) -> tuple[Claim, dict[str, Any]]:
        """A retry of a delivery still being answered: wait for its reply, or take over an orphaned claim.

        Returns ``done`` with the reply, ``first`` (answer it yourself: the claim was orphaned,
        or Redis is gone), or ``pending`` if nothing came in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            claim, session = self.begin(message_key, openid)
            if claim.state != "pending" or time.monotonic() + POLL_INTERVAL >= deadline:
                return claim, session
            time.sleep(POLL_INTERVAL)

    def wait_for_reply(self, message_key: str, timeout: float) -> bytes | None:
        """Poll for the reply another worker is computing; None if it is not there in time."""
        key = self.key("dedupe", message_key)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self._call("wait", lambda: self.client.get(key), None)
            if body is None and not self.available:
                return None
            if body is not None and not body.startswith(PENDING):
                return body
            time.sleep(POLL_INTERVAL)
        return None

    def session(self, openid: str) -> dict[str, Any]:
        raw, audience = self._call("session", lambda: self.client.mget(self.key("session", openid), self.key("audience", openid)), (None, None))
        session = _decode_session(raw)
        if audience is not None:
            session["audience"] = audience.decode("utf-8", "replace")
        return session

    def commit(self, message_key: str | None, body: bytes, openid: str, effects: Effects, today: dt.date | None = None) -> None:
        """Store the reply for retries and apply the message's effects in one transaction."""
        day = (today or dt.date.today()).strftime("%Y%m%d")

        def run() -> None:
            pipe = self.client.pipeline(transaction=True)
            if message_key is not None:
                pipe.set(self.key("dedupe", message_key), body, ex=DEDUPE_TTL)
            session_key = self.key("session", openid)
            if effects.forget:
                pipe.delete(session_key, self.key("audience", openid), self.key("rate", openid))
            elif effects.session is not None:
                if effects.session:
                    pipe.set(session_key, json.dumps(effects.session, ensure_ascii=False), ex=self.session_ttl)
                else:
                    pipe.delete(session_key)
            if effects.outcome in UNCOUNTED:
                pipe.execute()
                return
            stats_key = self.key("stats", day)
            pipe.hincrby(stats_key, f"outcome:{effects.outcome}", 1)
            if effects.topic:
                pipe.hincrby(stats_key, f"topic:{effects.topic}", 1)
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
