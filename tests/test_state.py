"""The state module against a real Redis: keys, TTLs, dedupe, isolation, degradation."""
from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

import state
from embedded_redis import EmbeddedRedis
from state import Effects, Store

TODAY = dt.date(2026, 9, 1)


def _ttls(store: Store) -> dict[str, int]:
    return {key.decode(): store.client.ttl(key) for key in store.client.scan_iter(match=f"{store.prefix}*")}


def test_every_key_written_has_a_ttl(store: Store) -> None:
    store.claim("msg:1")
    store.commit(
        "msg:1", b"<xml>reply</xml>", "o-a",
        Effects(outcome="fallback", topic=None, session={"pages": ["p2"]}, unanswered="食堂几点开门"),
        today=TODAY,
    )
    store.commit("msg:2", b"r", "o-b", Effects(outcome="answer", topic="diploma-lost", session={}), today=TODAY)
    ttls = _ttls(store)
    assert {k.removeprefix(store.prefix).split(":")[0] for k in ttls} == {"dedupe", "session", "stats", "unanswered"}
    assert all(ttl > 0 for ttl in ttls.values()), ttls
    assert ttls[f"{store.prefix}dedupe:msg:1"] <= state.DEDUPE_TTL
    assert ttls[f"{store.prefix}session:o-a"] <= store.session_ttl


def test_pending_claim_expires_quickly_so_a_crashed_worker_blocks_nothing_for_long(store: Store) -> None:
    assert store.claim("msg:9").state == "first"
    assert 0 < store.client.ttl(f"{store.prefix}dedupe:msg:9") <= state.PENDING_TTL


def test_dedupe_first_pending_done(store: Store) -> None:
    assert store.claim("msg:42") == state.Claim("first")
    assert store.claim("msg:42") == state.Claim("pending")
    store.commit("msg:42", b"the reply", "o-a", Effects(outcome="answer", topic="xueli-query"), today=TODAY)
    assert store.claim("msg:42") == state.Claim("done", b"the reply")
    assert store.stats(TODAY) == {"outcome:answer": 1, "topic:xueli-query": 1}


def test_concurrent_claims_have_exactly_one_winner(store: Store) -> None:
    results: list[str] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        results.append(store.claim("msg:race").state)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["first"] + ["pending"] * 7


def test_wait_for_reply_returns_the_first_workers_reply(store: Store) -> None:
    store.claim("msg:7")
    threading.Timer(0.1, lambda: store.commit("msg:7", b"late reply", "o-a", Effects(outcome="answer"))).start()
    assert store.wait_for_reply("msg:7", timeout=5) == b"late reply"


def test_wait_for_reply_gives_up_when_nothing_comes(store: Store) -> None:
    store.claim("msg:8")
    assert store.wait_for_reply("msg:8", timeout=0.2) is None


def test_sessions_are_isolated_between_students(store: Store) -> None:
    store.commit(None, b"", "o-alice", Effects(outcome="answer", session={"pages": ["alice page 2"]}))
    store.commit(None, b"", "o-bob", Effects(outcome="clarify", session={"candidates": ["diploma-lost", "xueli-query"]}))
    assert store.session("o-alice") == {"pages": ["alice page 2"]}
    assert store.session("o-bob") == {"candidates": ["diploma-lost", "xueli-query"]}
    store.commit(None, b"", "o-alice", Effects(outcome="unsubscribe", forget=True))
    assert store.session("o-alice") == {}
    assert store.session("o-bob") == {"candidates": ["diploma-lost", "xueli-query"]}


def test_an_empty_session_effect_clears_the_session(store: Store) -> None:
    store.commit(None, b"", "o-a", Effects(outcome="clarify", session={"candidates": ["a", "b"]}))
    store.commit(None, b"", "o-a", Effects(outcome="answer", session={}))
    assert store.session("o-a") == {}


def test_unanswered_questions_are_kept_newest_first(store: Store) -> None:
    for question in ["食堂几点开门", "宿舍能换吗"]:
        store.commit(None, b"", "o-a", Effects(outcome="fallback", unanswered=question), today=TODAY)
    assert store.unanswered(TODAY) == ["宿舍能换吗", "食堂几点开门"]
    assert store.stats(TODAY) == {"outcome:fallback": 2}


def test_unreachable_redis_degrades_to_neutral_answers(tmp_path: Path) -> None:
    dead = Store(client=state.connect(f"unix://{tmp_path}/nothing.sock", 0.2), prefix="t:")
    assert dead.claim("msg:1") == state.Claim("first")
    assert dead.session("o-a") == {}
    dead.commit("msg:1", b"r", "o-a", Effects(outcome="answer"))
    assert dead.stats(TODAY) == {}
    assert dead.available is False
    assert dead.ping() is False


def test_a_redis_that_never_answers_is_asked_once_not_per_call(tmp_path: Path) -> None:
    """A hung server (accepts, never replies) must not stall every message for the socket timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        hung = Store(client=state.connect(f"redis://127.0.0.1:{listener.getsockname()[1]}", 0.2), prefix="t:")
        assert hung.claim("msg:1") == state.Claim("first")
        assert hung.available is False
        for _ in range(50):
            assert hung.session("o-a") == {}
        listener.setblocking(False)
        connections = 0
        while True:
            try:
                listener.accept()[0].close()
            except BlockingIOError:
                break
            connections += 1
        assert connections == 1, "degraded calls must not each wait for the socket timeout"
    finally:
        listener.close()


def test_store_recovers_when_redis_comes_back(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "r").start()
    store = Store(client=state.connect(server.url, 0.2), prefix="t:")
    try:
        store.commit(None, b"", "o-a", Effects(outcome="answer", session={"audience": "graduate"}))
        server.stop()
        assert store.session("o-a") == {} and not store.available
        server.start()
        assert store.ping() is True and store.available
        assert store.claim("msg:after") == state.Claim("first")
        assert store.claim("msg:after") == state.Claim("pending")
    finally:
        server.stop()


def test_audience_lives_in_its_own_long_key_merged_into_the_session(store: Store) -> None:
    store.commit("m1", b"r", "o-aud", Effects(outcome="audience", session={"list": {"kind": "x", "items": []}, "audience": "ignored"},
                                             audience="graduate"))
    session = store.session("o-aud")
    assert session["audience"] == "graduate" and session["list"] == {"kind": "x", "items": []}
    raw = store.client.get(store.key("session", "o-aud"))
    assert b"audience" not in raw, "the audience is never copied into the short-lived session"
    assert store.client.ttl(store.key("audience", "o-aud")) > 179 * 86400
    store.commit("m2", b"r", "o-aud", Effects(outcome="answer", session={}))
    assert store.session("o-aud") == {"audience": "graduate"}, "an empty session leaves the audience"
    store.commit("m3", b"r", "o-aud", Effects(outcome="audience", audience=""))
    assert "audience" not in store.session("o-aud")


def test_unfollow_deletes_every_per_student_key_and_keeps_the_stats(store: Store) -> None:
    for kind in state.STUDENT_KEYS:
        store.client.set(store.key(kind, "o-gone"), "1", ex=600)
    store.client.set(store.key("session", "o-stays"), "{}", ex=600)
    store.commit("m1", b"r", "o-gone", Effects(outcome="answer", topic="chsi-what"))
    store.commit(None, b"success", "o-gone", Effects(outcome="unsubscribe", forget=True))
    assert all(not store.client.exists(store.key(kind, "o-gone")) for kind in state.STUDENT_KEYS)
    assert store.client.exists(store.key("session", "o-stays"))
    assert store.stats(dt.date.today())["topic:chsi-what"] == 1


def test_feedback_is_counted_against_the_entry(store: Store) -> None:
    store.commit("m1", b"r", "o-fb", Effects(outcome="feedback", feedback="xueli-query", unanswered="怎么查学历", unanswered_kind="feedback"))
    stats = store.stats(dt.date.today())
    assert stats["feedback:xueli-query"] == 1 and stats["outcome:feedback"] == 1
    assert store.unanswered(dt.date.today()) == ["怎么查学历"]


def test_forget_deletes_the_students_keys(store: Store) -> None:
    store.commit("m1", b"r", "o-reset", Effects(outcome="audience", session={"pages": ["x"]}, audience="ouc"))
    store.forget("o-reset")
    assert store.session("o-reset") == {}

def test_begin_claims_counts_and_reads_in_one_call(store: Store) -> None:
    store.commit(None, b"", "o-a", Effects(outcome="clarify", session={"candidates": ["a", "b"]}))
    store.client.set(store.key("audience", "o-a"), "graduate")
    claim, session = store.begin("msg:100", "o-a")
    assert claim == state.Claim("first", sent=1)
    assert session == {"candidates": ["a", "b"], "audience": "graduate"}
    assert store.begin("msg:101", "o-a")[0].sent == 2
    assert store.begin("msg:100", "o-a") == (state.Claim("pending"), {})
    assert 0 < store.client.ttl(store.key("rate", "o-a")) <= state.RATE_WINDOW
    store.commit("msg:100", b"reply", "o-a", Effects(outcome="answer"))
    assert store.begin("msg:100", "o-a") == (state.Claim("done", b"reply"), {})
    assert store.begin("msg:102", "o-a")[0].sent == 3, "retries are not counted against the limit"


def test_a_claim_arriving_after_its_deadline_is_not_written(store: Store) -> None:
    store.sync_clock()
    store._clock_offset_ms -= 10_000  # as if the script ran 10 s after the bot sent it (a stalled Redis)
    claim, session = store.begin("msg:late", "o-late")
    assert claim.state == "first" and session == {}
    assert store.client.get(store.key("dedupe", "msg:late")) is None
    assert store.client.get(store.key("rate", "o-late")) is None


def test_an_orphaned_pending_claim_is_taken_over(store: Store) -> None:
    old = int((time.time() - state.ORPHAN_AFTER - 1) * 1000)
    store.client.set(store.key("dedupe", "msg:orphan"), state.PENDING + str(old).encode(), px=state.PENDING_TTL * 1000)
    assert store.begin("msg:orphan", "o-a")[0] == state.Claim("first", sent=1)
    assert store.begin("msg:orphan", "o-a")[0] == state.Claim("pending")
    assert store.wait("msg:orphan", "o-a", timeout=0.2)[0] == state.Claim("pending")


def test_unsubscribing_deletes_every_per_student_key(store: Store) -> None:
    store.begin("msg:200", "o-gone")
    store.client.set(store.key("audience", "o-gone"), "undergrad")
    store.commit("msg:200", b"r", "o-gone", Effects(outcome="answer", session={"pages": ["2"]}))
    store.commit(None, b"", "o-gone", Effects(outcome="unsubscribe", forget=True))
    assert not store.client.exists(store.key("session", "o-gone"), store.key("audience", "o-gone"), store.key("rate", "o-gone"))


def test_flooded_messages_are_not_counted(store: Store) -> None:
    store.commit("msg:300", b"", "o-flood", Effects(outcome="rate_limited", unanswered="spam"), today=TODAY)
    assert store.stats(TODAY) == {} and store.unanswered(TODAY) == []


# --- the store's own connections for the per-message scripts ----------------------------------

def test_the_message_scripts_run_after_the_server_forgot_them(store: Store, redis_url: str) -> None:
    store.commit("msg:1", b"reply", "o-a", Effects(outcome="answer"))
    state.connect(redis_url, 1.0).script_flush()  # a restarted or flushed server knows no scripts
    assert store.claim("msg:1") == state.Claim("done", b"reply")
    store.commit("msg:2", b"two", "o-a", Effects(outcome="answer"))
    assert store.claim("msg:2") == state.Claim("done", b"two")
    assert store.available


def test_a_connection_the_server_closed_while_idle_is_replaced_without_degrading(store: Store, redis_url: str) -> None:
    """Redis's ``timeout``, a managed Redis's idle limit or a restart closes connections the store keeps."""
    admin = state.connect(redis_url, 1.0)
    before = {client["id"] for client in admin.client_list()}
    store.commit("msg:1", b"reply", "o-a", Effects(outcome="answer"))
    own = {client["id"] for client in admin.client_list()} - before
    assert own, "the store should have opened a connection of its own"
    for client_id in own:
        admin.client_kill_filter(_id=client_id)
    assert store.claim("msg:1") == state.Claim("done", b"reply")
    assert store.available


def test_a_reply_that_came_too_late_is_never_read_as_a_later_calls(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "r").start()
    store = Store(client=state.connect(server.url, 0.2), prefix="t:")
    try:
        store.commit("msg:done", b"reply", "o-a", Effects(outcome="answer"))
        os.kill(server._process.pid, signal.SIGSTOP)
        try:
            assert store.claim("msg:late") == state.Claim("first") and not store.available
        finally:
            os.kill(server._process.pid, signal.SIGCONT)
        assert store.ping()
        for _ in range(3):
            assert store.claim("msg:done") == state.Claim("done", b"reply")
    finally:
        server.stop()
