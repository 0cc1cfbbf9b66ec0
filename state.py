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
unanswered:groups      hash    group key (``knowledge.text.compact`` of the   ``UNANSWERED_TTL`` (90 days
                               question) → JSON ``{text, count, last_seen,    since the last one; a group
                               kinds: {fallback|clarify|feedback: n}}``       unseen that long is dropped)
unanswered:recent      zset    group key → last seen (unix time), capped at   ``UNANSWERED_TTL``
                               ``UNANSWERED_GROUPS_CAP`` groups
unanswered:handled     set     group keys staff marked handled (a new         ``UNANSWERED_TTL``
                               occurrence shows the group again)
kb:version             string  the live knowledge version: +1 on every staff  none
                               save (every process rebuilds when it moves)
kb:overlay             hash    file path (``entries/<id>.yaml``, ``texts.     none
                               yaml`` …) → JSON ``{text, rev, version, user,
                               at}``: files changed on top of ``knowledge/``
                               (``text`` null: deleted)
kb:history:<path>      list    JSON ``{rev, version, user, at, message,       none, capped at
                               text}`` of every save of that file, newest     ``KB_HISTORY_CAP``
                               first
rate:<openid>          string  messages the student sent in the current       ``RATE_WINDOW`` (60 s) from
                               window (rate limit, ``RATE_LIMIT``)            the window's first message
=====================  ======  =============================================  ===========================

Staff console (``admin/``): accounts, sign-in throttling and the audit trail.

========================  ======  ==========================================  ===========================
key                       type    value                                       TTL
========================  ======  ==========================================  ===========================
admin:users               set     the names of the staff accounts             none
admin:user:<name>         hash    ``hash`` (werkzeug password hash),          none
                                  ``created`` (ISO time)
admin:fail:user:<name>    hash    ``count`` of failed sign-ins, ``last``      ``ADMIN_FAIL_WINDOW``
                                  (unix time of the latest)                   (15 min, renewed)
admin:fail:ip:<addr>      hash    the same, per client address                ``ADMIN_FAIL_WINDOW``
admin:audit               list    JSON ``{at, user, action, detail}``, newest  none, capped at
                                  first: who did what in the console          ``ADMIN_AUDIT_CAP``
admin:upload:<token>      string  a spreadsheet uploaded for import, kept     ``ADMIN_UPLOAD_TTL``
                                  between its preview and its confirmation    (30 min)
========================  ======  ==========================================  ===========================

A message key is ``MsgId`` for messages and ``<FromUserName>:<CreateTime>:<Event>:<EventKey>``
for events (which have no MsgId), as WeChat retries both up to three times.

``STUDENT_KEYS`` names every per-student key kind (``<kind>:<openid>``): an
unfollow deletes them all; the aggregate ``stats`` and ``unanswered`` stay.

Per message the bot makes two round trips: ``begin`` (one Lua script: claim the
delivery, count it against the student's rate limit, read the session and the
remembered audience) before deciding, ``commit`` (one Lua script applying the
reply, session and statistics commands at once) after, each on a connection the
store keeps for them (``Store._run``).

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
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
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
AUDIENCE_TTL = 180 * 86400
STUDENT_KEYS = ("session", "audience", "rate")
UNANSWERED_GROUPS_CAP = 2_000
KB_HISTORY_CAP = 500
RETRY_AFTER = 1.0
POLL_INTERVAL = 0.05
ADMIN_FAIL_WINDOW = 15 * 60
ADMIN_AUDIT_CAP = 10_000
ADMIN_UPLOAD_TTL = 30 * 60
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
# After the answer: apply a list of commands at once. ARGV holds each command as its number of
# keys, its number of other arguments, then those arguments; its keys are the next ones of KEYS.
# GROUP (keys: groups hash, recency zset, handled set) counts an unanswered question in its group.
COMMIT_SCRIPT = """
local function group(k, key, text, kind, now, ttl, cap, cutoff)
  now, ttl, cap, cutoff = tonumber(now), tonumber(ttl), tonumber(cap), tonumber(cutoff)
  local raw = redis.call('HGET', k[1], key)
  local g = raw and cjson.decode(raw) or {count = 0, kinds = {}}
  g.text, g.count, g.last_seen = text, g.count + 1, now
  g.kinds[kind] = (g.kinds[kind] or 0) + 1
  redis.call('HSET', k[1], key, cjson.encode(g))
  redis.call('ZADD', k[2], now, key)
  redis.call('SREM', k[3], key)
  local gone = redis.call('ZRANGEBYSCORE', k[2], '-inf', cutoff)
  local extra = redis.call('ZCARD', k[2]) - #gone - cap
  if extra > 0 then
    for _, m in ipairs(redis.call('ZRANGE', k[2], #gone, #gone + extra - 1)) do table.insert(gone, m) end
  end
  for _, m in ipairs(gone) do
    redis.call('HDEL', k[1], m)
    redis.call('ZREM', k[2], m)
    redis.call('SREM', k[3], m)
  end
  for i = 1, 3 do redis.call('EXPIRE', k[i], ttl) end
end
local i, next_key = 1, 1
while i <= #ARGV do
  local name, nkeys, nargs = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local keys, args = {}, {}
  for j = 1, nkeys do keys[j] = KEYS[next_key + j - 1] end
  for j = 1, nargs do args[j] = ARGV[i + 2 + j] end
  if name == 'GROUP' then
    group(keys, unpack(args))
  else
    redis.call(name, keys[1], unpack(args))
  end
  i, next_key = i + 3 + nargs, next_key + nkeys
end
"""


class _Commands:
    """Redis commands gathered for COMMIT_SCRIPT: their keys (KEYS) and words (ARGV)."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.words: list[Any] = []

    def add(self, name: str, *parts: Any, keys: int = 1) -> None:
        """``name`` applied to ``parts``: its first ``keys`` parts are keys, the rest arguments."""
        self.keys += parts[:keys]
        self.words += [name, keys, len(parts) - keys, *parts[keys:]]


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
    audience: str | None = None  # None = unchanged, "" = forget, else remember this audience
    feedback: str | None = None  # entry id the student said did not help
    unanswered_kind: str = "fallback"  # "fallback" | "clarify" | "feedback"


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
    _idle: list[redis.Connection] = field(default_factory=list, repr=False)
    _idle_pid: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self._begin = self.client.register_script(BEGIN_SCRIPT)
        self._commit = self.client.register_script(COMMIT_SCRIPT)
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

    def _run(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """Run one of the per-message scripts on a connection of the store's own.

        redis-py's pool polls the socket of every connection it lends and runs its
        observability hooks on every command: a ``begin`` or ``commit`` through it costs
        2.4–2.7× the client CPU (``bench/redis_calls.py``), 130 µs a message. These
        connections only ever carry a whole command and its reply, and any error closes
        them, so one put back never has a reply left unread. One that sat idle may have
        been closed by the server (a restart, an idle timeout): a connection error on it
        is tried once more on a new connection; a timeout is not (a stalled server is
        not asked twice). A forked child starts with none of its parent's.
        """
        if self._idle_pid != os.getpid():
            self._idle, self._idle_pid = [], os.getpid()
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = None
        if conn is not None:
            try:
                reply = self._send(conn, script, keys, args)
            except redis.ConnectionError:
                pass  # closed while idle: once more on a new connection
            else:
                self._idle.append(conn)
                return reply
        pool = self.client.connection_pool
        conn = pool.connection_class(**pool.connection_kwargs)
        reply = self._send(conn, script, keys, args)
        self._idle.append(conn)
        return reply

    @staticmethod
    def _send(conn: redis.Connection, script: Script, keys: list[str], args: list[Any]) -> Any:
        """One command and its whole reply; any failure closes the connection."""
        try:
            try:
                conn.send_packed_command(conn.pack_command("EVALSHA", script.sha, len(keys), *keys, *args), check_health=False)
                return conn.read_response()
            except redis.exceptions.NoScriptError:  # a restarted or flushed server: EVAL loads the script again
                conn.send_packed_command(conn.pack_command("EVAL", script.script, len(keys), *keys, *args), check_health=False)
                return conn.read_response()
        except BaseException:
            conn.disconnect()
            raise

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
            reply = self._run(self._begin, keys, args)
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
        session.pop("audience", None)
        if audience is not None:
            session["audience"] = audience.decode("utf-8", "replace")
        return session

    def forget(self, openid: str) -> None:
        """Delete every per-student key (``STUDENT_KEYS``): what an unfollow or ``/reset`` in ``flask chat`` asks."""
        self._call("forget", lambda: self.client.delete(*(self.key(kind, openid) for kind in STUDENT_KEYS)), None)

    def commit(self, message_key: str | None, body: bytes, openid: str, effects: Effects, today: dt.date | None = None) -> None:
        """Store the reply for retries and apply the message's effects: one Lua script, so one
        command to send and one reply to read, applied all at once like MULTI/EXEC."""
        day = (today or dt.date.today()).strftime("%Y%m%d")
        ops = _Commands()
        if message_key is not None:
            ops.add("SET", self.key("dedupe", message_key), body, "EX", DEDUPE_TTL)
        session_key = self.key("session", openid)
        session = {k: v for k, v in (effects.session or {}).items() if k != "audience"}
        if effects.forget:
            for kind in STUDENT_KEYS:
                ops.add("DEL", self.key(kind, openid))
        elif effects.session is not None:
            if session:
                ops.add("SET", session_key, json.dumps(session, ensure_ascii=False), "EX", self.session_ttl)
            else:
                ops.add("DEL", session_key)
        if not effects.forget and effects.audience is not None:
            if effects.audience:
                ops.add("SET", self.key("audience", openid), effects.audience, "EX", AUDIENCE_TTL)
            else:
                ops.add("DEL", self.key("audience", openid))
        if effects.outcome not in UNCOUNTED:
            stats_key = self.key("stats", day)
            ops.add("HINCRBY", stats_key, f"outcome:{effects.outcome}", 1)
            if effects.topic:
                ops.add("HINCRBY", stats_key, f"topic:{effects.topic}", 1)
            if effects.feedback:
                ops.add("HINCRBY", stats_key, f"feedback:{effects.feedback}", 1)
            ops.add("EXPIRE", stats_key, STATS_TTL)
            if effects.unanswered:
                unanswered_key = self.key("unanswered", day)
                ops.add("LPUSH", unanswered_key, effects.unanswered)
                ops.add("LTRIM", unanswered_key, 0, UNANSWERED_CAP - 1)
                ops.add("EXPIRE", unanswered_key, UNANSWERED_TTL)
                self._group_unanswered(ops, effects.unanswered, effects.unanswered_kind, time.time())
        if ops.words:
            self._call("commit", lambda: self._run(self._commit, ops.keys, ops.words), None)

    # --- unanswered questions, grouped (read by the staff console) ---


    def _unanswered_keys(self) -> list[str]:
        return [self.key("unanswered", name) for name in ("groups", "recent", "handled")]

    def _group_unanswered(self, ops: "_Commands", text: str, kind: str, now: float) -> None:
        """Count one unanswered question in its group (same words once spaces, punctuation, case go)."""
        from knowledge.text import compact

        group = compact(text) or text.strip()
        if not group:
            return
        args = (group, text.strip(), kind, repr(now), UNANSWERED_TTL, UNANSWERED_GROUPS_CAP, repr(now - UNANSWERED_TTL))
        ops.add("GROUP", *self._unanswered_keys(), *args, keys=3)

    def unanswered_groups(self, limit: int = 200, include_handled: bool = False) -> list[dict[str, Any]]:
        """Unanswered questions grouped by normalised text, newest first: ``{key, text, count, last_seen, kinds, handled}``.

        Raises ``redis.RedisError`` (the console has no stateless mode)."""
        groups_key, recent_key, handled_key = self._unanswered_keys()
        handled = {k.decode() for k in self.client.smembers(handled_key)}
        keys = [k.decode() for k in self.client.zrevrange(recent_key, 0, -1)]
        if not include_handled:
            keys = [k for k in keys if k not in handled]
        keys = keys[:limit]
        raws = self.client.hmget(groups_key, keys) if keys else []
        groups = []
        for key, raw in zip(keys, raws):
            if raw is None:
                continue
            group = json.loads(raw)
            kinds = group.get("kinds") or {}
            groups.append({
                "key": key,
                "text": group.get("text", key),
                "count": int(group.get("count", 0)),
                "last_seen": dt.datetime.fromtimestamp(float(group.get("last_seen", 0)), dt.timezone.utc),
                "kinds": {k: int(v) for k, v in kinds.items()} if isinstance(kinds, dict) else {},
                "handled": key in handled,
            })
        return groups

    def mark_handled(self, key: str, user: str) -> bool:
        """Hide a group from the unanswered list (until it is asked again); False if there is no such group."""
        groups_key, _, handled_key = self._unanswered_keys()
        if not self.client.hexists(groups_key, key):
            return False
        pipe = self.client.pipeline(transaction=True)
        pipe.sadd(handled_key, key)
        pipe.expire(handled_key, UNANSWERED_TTL)
        pipe.execute()
        return True

    def daily_stats(self, days: int = 30, today: dt.date | None = None) -> list[tuple[dt.date, dict[str, int]]]:
        """The last ``days`` days of ``stats:<yyyymmdd>`` counts, oldest first (days without messages: empty)."""
        last = today or dt.date.today()
        dates = [last - dt.timedelta(days=n) for n in range(days - 1, -1, -1)]
        pipe = self.client.pipeline(transaction=False)
        for day in dates:
            pipe.hgetall(self.key("stats", day.strftime("%Y%m%d")))
        return [(day, {k.decode(): int(v) for k, v in raw.items()}) for day, raw in zip(dates, pipe.execute())]

    # --- live knowledge (knowledge/live.py): these raise redis.RedisError, except kb_poll_version ---

    def kb_poll_version(self) -> int | None:
        """The live knowledge version for the reload thread; None while Redis does not answer (degrades, logs once)."""
        raw = self._call("kb version", lambda: self.client.get(self.key("kb", "version")) or b"0", None)
        return None if raw is None else int(raw)

    def kb_snapshot(self) -> tuple[int, dict[str, dict[str, Any]]]:
        """The version and the overlay records it is made of, read together."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.key("kb", "version"))
        pipe.hgetall(self.key("kb", "overlay"))
        version, overlay = pipe.execute()
        return int(version or 0), {k.decode(): json.loads(v) for k, v in overlay.items()}

    def kb_history(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(item) for item in self.client.lrange(self.key("kb", f"history:{path}"), 0, -1)]

    def kb_write(self, expected_version: int, records: dict[str, dict[str, Any]], audit: dict[str, str]) -> int | None:
        """Write the changed files, their history and an audit line, and bump the version, all at once.

        None when the version is no longer ``expected_version`` (someone saved meanwhile: check again)."""
        version_key, overlay_key = self.key("kb", "version"), self.key("kb", "overlay")
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(version_key)
                if int(pipe.get(version_key) or 0) != expected_version:
                    return None
                pipe.multi()
                for path, record in records.items():
                    history_key = self.key("kb", f"history:{path}")
                    pipe.hset(overlay_key, path, json.dumps({k: v for k, v in record.items() if k != "message"}, ensure_ascii=False))
                    pipe.lpush(history_key, json.dumps(record, ensure_ascii=False))
                    pipe.ltrim(history_key, 0, KB_HISTORY_CAP - 1)
                pipe.incr(version_key)
                audit_key = self.key("admin", "audit")
                pipe.lpush(audit_key, json.dumps(audit, ensure_ascii=False))
                pipe.ltrim(audit_key, 0, ADMIN_AUDIT_CAP - 1)
                results = pipe.execute()
            except redis.WatchError:
                return None
        return int(results[-3])

    def stats(self, day: dt.date) -> dict[str, int]:
        raw = self._call("stats", lambda: self.client.hgetall(self.key("stats", day.strftime("%Y%m%d"))), {})
        return {k.decode(): int(v) for k, v in raw.items()}

    def unanswered(self, day: dt.date) -> list[str]:
        raw = self._call("unanswered", lambda: self.client.lrange(self.key("unanswered", day.strftime("%Y%m%d")), 0, -1), [])
        return [item.decode() for item in raw]

    # --- staff console (admin/): these raise redis.RedisError, the console has no stateless mode ---

    def admin_user(self, name: str) -> dict[str, str] | None:
        """A staff account (``hash``, ``created``), or None."""
        raw = self.client.hgetall(self.key("admin", f"user:{name}"))
        return {k.decode(): v.decode() for k, v in raw.items()} or None

    def admin_users(self) -> list[str]:
        return sorted(name.decode() for name in self.client.smembers(self.key("admin", "users")))

    def admin_save_user(self, name: str, password_hash: str, created: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.key("admin", f"user:{name}"), mapping={"hash": password_hash, "created": created})
        pipe.sadd(self.key("admin", "users"), name)
        pipe.execute()

    def admin_delete_user(self, name: str) -> bool:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.key("admin", f"user:{name}"))
        pipe.srem(self.key("admin", "users"), name)
        return bool(pipe.execute()[0])

    def admin_failures(self, kind: str, name: str) -> tuple[int, float]:
        """Failed sign-ins in the current window for an account (``user``) or address (``ip``): (count, last)."""
        raw = self.client.hgetall(self.key("admin", f"fail:{kind}:{name}"))
        return int(raw.get(b"count", 0)), float(raw.get(b"last", 0.0))

    def admin_note_failure(self, user: str, address: str, now: float) -> None:
        pipe = self.client.pipeline(transaction=True)
        for kind, name in (("user", user), ("ip", address)):
            key = self.key("admin", f"fail:{kind}:{name}")
            pipe.hincrby(key, "count", 1)
            pipe.hset(key, "last", repr(now))
            pipe.expire(key, ADMIN_FAIL_WINDOW)
        pipe.execute()

    def admin_clear_failures(self, user: str) -> None:
        self.client.delete(self.key("admin", f"fail:user:{user}"))

    def admin_record(self, user: str, action: str, detail: str = "", at: str | None = None) -> None:
        """Append to the audit trail: who did what in the console."""
        entry = {"at": at or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "user": user, "action": action, "detail": detail}
        key = self.key("admin", "audit")
        pipe = self.client.pipeline(transaction=True)
        pipe.lpush(key, json.dumps(entry, ensure_ascii=False))
        pipe.ltrim(key, 0, ADMIN_AUDIT_CAP - 1)
        pipe.execute()

    def admin_audit(self, limit: int = 200) -> list[dict[str, str]]:
        return [json.loads(item) for item in self.client.lrange(self.key("admin", "audit"), 0, limit - 1)]

    def admin_put_upload(self, token: str, data: bytes) -> None:
        self.client.set(self.key("admin", f"upload:{token}"), data, ex=ADMIN_UPLOAD_TTL)

    def admin_upload(self, token: str) -> bytes | None:
        return self.client.get(self.key("admin", f"upload:{token}"))

    def admin_drop_upload(self, token: str) -> None:
        self.client.delete(self.key("admin", f"upload:{token}"))
