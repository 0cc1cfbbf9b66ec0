"""The live knowledge base against a real Redis: saves, refusals, conflicts, history, folders, spreadsheets,
what an edit changes, the grouped unanswered questions, and the reload of every app process."""
from __future__ import annotations

import datetime as dt
import io
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from openpyxl import load_workbook

import bot
import config as settings
import state
from conftest import ROOT, for_everyone, start_app
from embedded_redis import EmbeddedRedis
from knowledge.impact import impact, labelled_questions
from knowledge.live import Conflict, Invalid, LiveKnowledge, entry_from_yaml, entry_to_yaml, read_folder
from knowledge.spreadsheet import export_xlsx, import_xlsx
from state import Effects, Store
from wechatsim import text_message

FLASK = str(Path(sys.executable).parent / "flask")
SHIPPED = ROOT / "knowledge"
TODAY = dt.date(2026, 9, 1)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return settings.load({"WECHAT_TOKEN": "test-token"}, env={})


@pytest.fixture
def live(store: Store, config: dict[str, Any]) -> LiveKnowledge:
    return LiveKnowledge(SHIPPED, store, config)


def marker() -> str:
    return f"（校对标记{uuid.uuid4().hex[:8]}）"


def entry_path(entry_id: str) -> str:
    return f"entries/{entry_id}.yaml"


def edited(live: LiveKnowledge, entry_id: str, change: Callable[[dict], None]) -> tuple[dict[str, str], dict[str, int]]:
    """The change of one entry file, and the revision it was read at, as the console makes them."""
    text, rev = live.read(entry_path(entry_id))
    entry = entry_from_yaml(text)
    change(entry)
    return {entry_path(entry_id): entry_to_yaml(entry)}, {entry_path(entry_id): rev}


def with_answer(answer: str) -> Callable[[dict], None]:
    return lambda entry: entry.update(answer=answer)


# --- saving, refusing, conflicts, history ---


def test_a_saved_edit_is_live_with_a_new_version_and_revision(live: LiveKnowledge) -> None:
    assert live.version() == 0 and live.read(entry_path("xueli-query"))[1] == 0
    assert live.files() == read_folder(SHIPPED)
    tag = marker()
    changes, revs = edited(live, "xueli-query", with_answer(f"请登录学信网查询。{tag}"))
    assert live.save(changes, "alice", revs) == 1
    text, rev = live.read(entry_path("xueli-query"))
    assert (text, rev) == (changes[entry_path("xueli-query")], 1)
    version, kb, _ = live.build()
    assert version == 1 and tag in kb.render("xueli-query")
    assert live.audit(1)[0]["user"] == "alice" and entry_path("xueli-query") in live.audit(1)[0]["detail"]
    assert live.save(changes, "alice", {entry_path("xueli-query"): 1}) == 1, "saving the same text again is no change"


def test_an_invalid_edit_is_refused_with_its_reasons_and_the_previous_answer_stays_live(live: LiveKnowledge) -> None:
    tag = marker()
    changes, revs = edited(live, "xueli-query", with_answer(f"请登录学信网查询。{tag}"))
    live.save(changes, "alice", revs)
    bad, bad_revs = edited(live, "xueli-query", with_answer("请拨打{office_fax}咨询"))
    problems = live.validate(bad)
    assert [(p.file, p.entry) for p in problems] == [(entry_path("xueli-query"), "xueli-query")]
    assert "office_fax" in problems[0].message
    with pytest.raises(Invalid) as refused:
        live.save(bad, "bob", bad_revs)
    assert refused.value.problems == problems
    for broken, reason in [
        ({entry_path("xueli-query"): "entry: [unclosed"}, "cannot read"),
        ({"../outside.yaml": "a: 1"}, "not a knowledge file path"),
        ({entry_path("chsi-contact"): None}, "catalogue id has no entry"),
        ({"texts.yaml": "texts: {welcome: hi}"}, "missing or empty"),
    ]:
        with pytest.raises(Invalid) as refused:
            live.save(broken, "bob", {})
        assert any(reason in str(p) for p in refused.value.problems), refused.value.problems
    assert live.version() == 1
    assert live.read(entry_path("xueli-query")) == (changes[entry_path("xueli-query")], 1)
    assert tag in live.build()[1].render("xueli-query")
    assert [h["rev"] for h in live.history(entry_path("xueli-query"))] == [1, 0]


def test_a_concurrent_edit_is_detected_and_the_difference_shown(live: LiveKnowledge) -> None:
    alice, revs = edited(live, "xueli-query", with_answer("请登录学信网，点「学历查询」查看。"))
    bob, bob_revs = edited(live, "xueli-query", with_answer("请在学信网「学历查询」里查看。"))
    assert revs == bob_revs == {entry_path("xueli-query"): 0}
    live.save(alice, "alice", revs)
    with pytest.raises(Conflict) as conflict:
        live.save(bob, "bob", bob_revs)
    assert (conflict.value.path, conflict.value.expected_rev, conflict.value.actual_rev) == (entry_path("xueli-query"), 0, 1)
    assert "-  answer: 请登录学信网，点「学历查询」查看。" in conflict.value.diff
    assert "+  answer: 请在学信网「学历查询」里查看。" in conflict.value.diff
    assert live.read(entry_path("xueli-query")) == (alice[entry_path("xueli-query")], 1)


def test_two_saves_racing_from_the_same_revision_one_wins_one_is_told(live: LiveKnowledge) -> None:
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def save(user: str, answer: str) -> None:
        changes, revs = edited(live, "xueli-query", with_answer(answer))
        barrier.wait()
        try:
            live.save(changes, user, revs)
            outcomes.append("saved")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=save, args=(u, f"请登录学信网查询学历。{u}")) for u in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["conflict", "saved"]
    assert live.version() == 1 and len(live.history(entry_path("xueli-query"))) == 2


def test_history_keeps_every_change_and_an_old_version_can_be_restored(live: LiveKnowledge) -> None:
    path = entry_path("xueli-query")
    shipped = live.read(path)[0]
    first, revs = edited(live, "xueli-query", with_answer("第一版：请登录学信网查询。"))
    live.save(first, "alice", revs, message="简化")
    second, revs = edited(live, "xueli-query", with_answer("第二版：请在学信网查询。"))
    live.save(second, "bob", revs)
    history = live.history(path)
    assert [(h["rev"], h["user"]) for h in history] == [(2, "bob"), (1, "alice"), (0, "")]
    assert history[1]["message"] == "简化" and history[0]["at"]
    assert "-  answer: 第一版：请登录学信网查询。" in history[0]["diff"] and "+  answer: 第二版：请在学信网查询。" in history[0]["diff"]
    assert "+  answer: 第一版：请登录学信网查询。" in history[1]["diff"]
    assert live.restore(path, 1, "carol") == 3
    assert live.read(path) == (first[path], 3)
    assert live.history(path)[0]["user"] == "carol" and live.history(path)[0]["message"] == "restore rev 1"
    live.restore(path, 0, "carol")
    assert live.read(path) == (shipped, 4)
    with pytest.raises(KeyError):
        live.text_at(path, 9)


def test_a_new_entry_can_be_added_and_deleted(live: LiveKnowledge) -> None:
    text, _ = live.read(entry_path("xueli-query"))
    entry = entry_from_yaml(text) | {"id": "xueli-print", "question": "学历证书电子注册备案表怎么打印", "keywords": []}
    entry["similar"] = ["备案表在哪打印", "电子注册备案表下载", "学历备案表打印", "怎么打印学历备案表", "备案表去哪里弄", "学历电子备案表"]
    path = entry_path("xueli-print")
    live.save({path: entry_to_yaml(entry)}, "alice", {path: 0})
    assert "xueli-print" in live.build()[1].entries
    live.save({path: None}, "alice", {path: 1})
    assert live.read(path) == (None, 2) and "xueli-print" not in live.build()[1].entries


# --- a disabled entry ---


def test_a_disabled_entry_is_never_answered_or_offered(live: LiveKnowledge) -> None:
    entry_id = "xueli-registration-error"
    changes, _ = edited(live, entry_id, lambda e: e.update(enabled=False))
    kb, matcher = live.draft(changes)
    assert entry_id not in kb.entries
    source = live.build()[1].entries[entry_id]
    for question in [source.question, *source.similar]:
        match = matcher.match(question)
        assert match.entry_id != entry_id and entry_id not in match.candidates, question
    assert entry_from_yaml(changes[entry_path(entry_id)])["enabled"] is False


def menu_entry() -> str:
    """The first entry a menu button answers with directly (``entry:``), read from the shipped menu."""
    menu = yaml.safe_load((SHIPPED / "menu.yaml").read_text(encoding="utf-8"))
    return next(b["entry"] for top in menu["button"] for b in [top, *top.get("sub_button", [])] if b.get("entry"))


@pytest.mark.parametrize("entry_id, where", [(menu_entry(), "menu.yaml"), ("chsi-what", "rules.yaml")])
def test_an_entry_the_menu_or_a_rule_answers_with_cannot_be_disabled(live: LiveKnowledge, entry_id: str, where: str) -> None:
    changes, _ = edited(live, entry_id, lambda e: e.update(enabled=False))
    problems = live.validate(changes)
    assert any(p.file == where and f"disabled entry {entry_id!r}" in p.message for p in problems), problems


def test_a_group_may_lose_an_entry_but_not_every_one(live: LiveKnowledge) -> None:
    """A disabled entry drops out of its numbered lists; a group left with none would offer the student nothing."""
    kb = live.build()[1]
    named = yaml.safe_load(live.read("menu.yaml")[0] or "") or {}
    direct = {b.get("entry") for top in named.get("button", []) for b in [top, *top.get("sub_button", [])]}
    direct |= {r.get("entry") for r in (yaml.safe_load(live.read("rules.yaml")[0] or "") or {}).get("rules", [])}
    group = next(g for g in kb.conversation.groups.values() if len(g.entries) >= 2 and not direct & set(g.entries))
    one, _ = edited(live, group.entries[0], lambda e: e.update(enabled=False))
    assert live.validate(one) == []
    every: dict[str, str] = {}
    for entry_id in group.entries:
        every.update(edited(live, entry_id, lambda e: e.update(enabled=False))[0])
    problems = live.validate(every)
    assert any(p.file == "conversation.yaml" and f"group {group.key!r} names only disabled entries" in p.message for p in problems), problems


# --- folders and spreadsheets ---


def test_export_then_import_is_lossless(live: LiveKnowledge, store: Store, config: dict[str, Any], tmp_path: Path) -> None:
    changes, revs = edited(live, "xueli-query", with_answer(f"请登录学信网查询。{marker()}"))
    deleted = "rules.yaml"  # a shipped file the bot can do without
    changes[deleted] = None
    live.save(changes, "alice", revs)
    live.export(tmp_path / "a")
    assert read_folder(tmp_path / "a") == live.files() and not (tmp_path / "a" / deleted).exists()
    assert live.import_folder(tmp_path / "a", "alice") == 1, "importing what was exported changes nothing"

    other = LiveKnowledge(SHIPPED, Store(client=store.client, prefix=f"{store.prefix}other:"), config)
    assert other.import_folder(tmp_path / "a", "bob") == 1
    assert other.files() == live.files()
    other.export(tmp_path / "b")
    assert read_folder(tmp_path / "b") == read_folder(tmp_path / "a")


def test_an_invalid_folder_is_not_imported_at_all(live: LiveKnowledge, tmp_path: Path) -> None:
    live.export(tmp_path)
    (tmp_path / "entries" / "xueli-query.yaml").write_text("entry: {id: xueli-query}\n", encoding="utf-8")
    texts = tmp_path / "texts.yaml"
    texts.write_text(texts.read_text(encoding="utf-8") + f"# {marker()}\n", encoding="utf-8")
    with pytest.raises(Invalid) as refused:
        live.import_folder(tmp_path, "alice")
    assert {p.file for p in refused.value.problems} == {entry_path("xueli-query")}
    assert live.version() == 0 and live.files() == read_folder(SHIPPED)


def test_spreadsheet_export_then_import_is_lossless_and_an_edited_cell_changes_one_entry(live: LiveKnowledge) -> None:
    changes, revs = edited(live, "xueji-mismatch", lambda e: e.update(enabled=False, links=[{"title": "学信网 查询", "url": "https://www.chsi.com.cn/xlcx/"}]))
    live.save(changes, "alice", revs)
    files = live.files()
    data = export_xlsx(files)
    assert import_xlsx(data, files) == {}

    book = load_workbook(io.BytesIO(data))
    sheet = book.active
    header = [cell.value for cell in sheet[1]]
    row = next(r for r in sheet.iter_rows(min_row=2) if r[0].value == "diploma-progress")
    tag = marker()
    row[header.index("答案")].value = f"毕业证书在毕业典礼后由学院发放。{tag}"
    out = io.BytesIO()
    book.save(out)
    changed = import_xlsx(out.getvalue(), files)
    assert list(changed) == [entry_path("diploma-progress")]
    assert live.save(changed, "alice", {entry_path("diploma-progress"): 0}) == 2
    assert tag in live.build()[1].render("diploma-progress")
    assert entry_from_yaml(live.read(entry_path("xueji-mismatch"))[0])["enabled"] is False


def test_a_malformed_spreadsheet_row_is_refused_with_its_row_number(live: LiveKnowledge) -> None:
    files = live.files()
    book = load_workbook(io.BytesIO(export_xlsx(files)))
    sheet = book.active
    header = [cell.value for cell in sheet[1]]
    sheet.cell(3, header.index("启用") + 1).value = "也许"
    sheet.cell(5, header.index("相似问") + 1).value = "只有一个"
    out = io.BytesIO()
    book.save(out)
    with pytest.raises(Invalid) as refused:
        import_xlsx(out.getvalue(), files)
    assert {p.file for p in refused.value.problems} == {"row 3", "row 5"}
    with pytest.raises(Invalid):
        import_xlsx(b"not a workbook", files)


# --- what would change ---


def test_impact_lists_the_questions_whose_decision_an_edit_changes(live: LiveKnowledge) -> None:
    questions = labelled_questions()
    sources = {source for _, source in questions}
    assert "fresh-questions.yaml" in sources and len(questions) > 100
    if (ROOT.parent / "shared" / "eval" / "dev-questions.yaml").exists():
        assert "dev-questions.yaml" in sources
    _, _, old = live.build()
    entry_id = "xueli-registration-error"
    changes, _ = edited(live, entry_id, lambda e: e.update(enabled=False))
    _, new = live.draft(changes)
    changed = impact(old, new, questions)
    assert changed, "disabling an entry must change some labelled decision"
    assert any(c["old_action"] == "answer" and c["old_id"] == entry_id and c["new_id"] != entry_id for c in changed)
    for item in changed:
        assert (item["old_action"], item["old_id"], item["old_candidates"]) != (item["new_action"], item["new_id"], item["new_candidates"])
    assert impact(old, old, questions) == []


# --- unanswered questions and usage (state.py) ---


def test_unanswered_questions_are_grouped_counted_and_can_be_marked_handled(store: Store) -> None:
    for text, kind in [("食堂几点开门？", "fallback"), ("食堂 几点开门", "clarify"), ("宿舍能换吗", "feedback")]:
        store.commit(None, b"", "o-a", Effects(outcome="fallback", unanswered=text, unanswered_kind=kind))
    groups = store.unanswered_groups()
    assert [(g["text"], g["count"]) for g in groups] == [("宿舍能换吗", 1), ("食堂 几点开门", 2)]
    assert groups[1]["kinds"] == {"fallback": 1, "clarify": 1} and groups[0]["kinds"] == {"feedback": 1}
    assert groups[0]["last_seen"] >= groups[1]["last_seen"]

    assert store.mark_handled(groups[1]["key"], "alice") is True
    assert all(0 < store.client.ttl(key) <= state.UNANSWERED_TTL for key in store._unanswered_keys())
    assert store.mark_handled("no-such-group", "alice") is False
    assert [g["text"] for g in store.unanswered_groups()] == ["宿舍能换吗"]
    assert [g["handled"] for g in store.unanswered_groups(include_handled=True)] == [False, True]
    store.commit(None, b"", "o-b", Effects(outcome="fallback", unanswered="食堂几点开门"))
    assert [(g["text"], g["count"]) for g in store.unanswered_groups()][0] == ("食堂几点开门", 3), "asked again: shown again"


def test_unanswered_groups_are_capped_keeping_the_newest(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "UNANSWERED_GROUPS_CAP", 3)
    for n in range(5):
        store.commit(None, b"", "o-a", Effects(outcome="fallback", unanswered=f"问题{n}"))
    assert [g["text"] for g in store.unanswered_groups()] == ["问题4", "问题3", "问题2"]
    assert store.client.hlen(store.key("unanswered", "groups")) == 3


def test_daily_stats_are_the_last_days_oldest_first(store: Store) -> None:
    store.commit(None, b"", "o-a", Effects(outcome="answer", topic="xueli-query"), today=TODAY)
    store.commit(None, b"", "o-a", Effects(outcome="fallback"), today=TODAY - dt.timedelta(days=2))
    days = store.daily_stats(3, today=TODAY)
    assert [day for day, _ in days] == [TODAY - dt.timedelta(days=n) for n in (2, 1, 0)]
    assert [counts for _, counts in days] == [{"outcome:fallback": 1}, {}, {"outcome:answer": 1, "topic:xueli-query": 1}]


def test_staff_edits_survive_a_restart_of_the_embedded_redis(tmp_path: Path, config: dict[str, Any]) -> None:
    server = EmbeddedRedis(tmp_path).start()
    try:
        live = LiveKnowledge(SHIPPED, Store(client=state.connect(server.url, 1.0)), config)
        changes, revs = edited(live, "xueli-query", with_answer(f"请登录学信网查询。{marker()}"))
        live.save(changes, "alice", revs)
        server.stop()
        server.start()
        assert live.read(entry_path("xueli-query")) == (changes[entry_path("xueli-query")], 1)
    finally:
        server.stop()


# --- reloading in a process ---


@pytest.fixture
def running_bot(redis_url: str, prefix: str) -> bot.Bot:
    overrides = {"WECHAT_TOKEN": "test-token", "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "KB_RELOAD_INTERVAL": "0"}
    return bot.build(settings.load(overrides, env={}))


def test_the_reloader_swaps_in_a_saved_edit_and_keeps_the_old_knowledge_when_a_build_fails(
    running_bot: bot.Bot, live: LiveKnowledge, caplog: pytest.LogCaptureFixture
) -> None:
    reloader = bot.Reloader(running_bot, 0.5)
    assert running_bot.version == 0 and reloader.check() is False
    tag = marker()
    changes, revs = edited(live, "xueli-query", with_answer(f"请登录学信网查询。{tag}"))
    live.save(changes, "alice", revs)
    before = running_bot.knowledge_pair
    assert reloader.check() is True
    assert running_bot.version == 1 and running_bot.knowledge_pair is not before
    assert tag in running_bot.kb.render("xueli-query")

    # an overlay that cannot be built (as after a deploy that changed the shipped files under it)
    record = {"text": "entry: [broken", "rev": 9, "version": 2, "user": "x", "at": ""}
    assert live.store.kb_write(1, {entry_path("xueli-query"): record}, {"at": "", "user": "x", "action": "test", "detail": ""}) == 2
    with caplog.at_level(logging.ERROR, logger="bot"):
        assert reloader.check() is False
        assert reloader.check() is False
    assert sum("cannot be built" in r.getMessage() for r in caplog.records) == 1, "a failed version is logged once"
    assert running_bot.version == 1 and tag in running_bot.kb.render("xueli-query")

    # Redis emptied (a flushed or new server): the shipped folder is the truth again
    live.store.client.delete(live.store.key("kb", "version"), live.store.key("kb", "overlay"))
    assert reloader.check() is True
    assert running_bot.version == 0 and tag not in running_bot.kb.render("xueli-query")


def test_a_process_started_after_an_edit_serves_it(live: LiveKnowledge, redis_url: str, prefix: str) -> None:
    tag = marker()
    changes, revs = edited(live, "xueli-query", with_answer(f"请登录学信网查询。{tag}"))
    live.save(changes, "alice", revs)
    started = bot.build(settings.load({"WECHAT_TOKEN": "t", "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "KB_RELOAD_INTERVAL": "0"}, env={}))
    assert started.version == 1 and tag in started.kb.render("xueli-query")


def test_the_reloader_thread_is_a_daemon_survives_an_outage_and_stops(tmp_path: Path, config: dict[str, Any]) -> None:
    server = EmbeddedRedis(tmp_path).start()
    store = Store(client=state.connect(server.url, 0.2))
    kb, matcher = bot.knowledge(config)
    running = bot.Bot(config=config, knowledge_pair=(kb, matcher), store=store, crypto=None, version=0)
    reloader = bot.Reloader(running, 0.05).start()
    try:
        assert reloader._thread is not None and reloader._thread.daemon
        server.stop()
        assert reloader.check() is False
        deadline = time.monotonic() + 5
        while store.available and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not store.available and reloader._thread.is_alive()
        assert running.knowledge_pair == (kb, matcher)
    finally:
        reloader.stop()
        server.stop()
    assert not reloader._thread.is_alive()


# --- the CLI ---


def flask(redis_url: str, prefix: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "REDIS_", "FLASK_"))}
    env.update(REDIS_URL=redis_url, REDIS_PREFIX=prefix)
    return subprocess.run([FLASK, "kb", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_cli_export_import_and_ask_use_the_live_knowledge(live: LiveKnowledge, redis_url: str, prefix: str, tmp_path: Path) -> None:
    tag = marker()
    changes, revs = edited(live, "xueli-query", with_answer(f"请登录学信网查询。{tag}"))
    live.save(changes, "alice", revs)
    question = entry_from_yaml(changes[entry_path("xueli-query")])["question"]
    asked = flask(redis_url, prefix, "ask", "--json", question)
    assert asked.returncode == 0, asked.stderr
    assert tag in yaml.safe_load(asked.stdout)["reply"]
    assert tag not in yaml.safe_load(flask(redis_url, prefix, "ask", "--json", "--shipped", question).stdout)["reply"]

    exported = flask(redis_url, prefix, "export", str(tmp_path / "kb"))
    assert exported.returncode == 0, exported.stderr
    assert read_folder(tmp_path / "kb") == live.files()
    entry = tmp_path / "kb" / entry_path("diploma-progress")
    entry.write_text(entry.read_text(encoding="utf-8").replace("  answer: |\n", f"  answer: |\n    {tag}\n", 1), encoding="utf-8")
    imported = flask(redis_url, prefix, "import", str(tmp_path / "kb"))
    assert imported.returncode == 0, imported.stderr
    assert live.version() == 2 and tag in live.build()[1].render("diploma-progress")

    entry.write_text("entry: {id: diploma-progress}\n", encoding="utf-8")
    refused = flask(redis_url, prefix, "import", str(tmp_path / "kb"))
    assert refused.returncode != 0 and "entries/diploma-progress.yaml [diploma-progress]" in refused.stderr
    assert live.version() == 2
    assert flask(redis_url, prefix, "validate", "--live").returncode == 0


# --- across processes ---


def test_an_edit_saved_through_one_process_is_answered_by_another_within_two_seconds(
    tmp_path: Path, redis_url: str, prefix: str, live: LiveKnowledge
) -> None:
    apps = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        apps.append(start_app(tmp_path / name, REDIS_URL=redis_url, REDIS_PREFIX=prefix))
    try:
        servers = [app.wechat() for app in apps]
        kb = live.build()[1]
        (entry_id,) = for_everyone(kb, "xueli-certification")  # every fresh student gets the answer itself
        question = kb.entries[entry_id].question
        failures: list[str] = []
        replies = 0
        stop = threading.Event()

        def keep_asking() -> None:
            nonlocal replies
            while not stop.is_set():
                for server in servers:
                    reply = server.send(text_message(question, openid=f"o-{uuid.uuid4().hex[:8]}"), mode="safe", timeout=5)
                    if reply.status != 200 or not reply.content:
                        failures.append(f"{reply.status}: {reply.body[:200]!r}")
                    replies += 1
                stop.wait(0.2)

        asker = threading.Thread(target=keep_asking, daemon=True)
        asker.start()
        tag = marker()
        changes, revs = edited(live, entry_id, with_answer(f"请登录学信网申请学历认证。{tag}"))
        live.save(changes, "alice", revs)
        saved = time.monotonic()
        seen_at = None
        while time.monotonic() < saved + 2.0:
            reply = servers[1].send(text_message(question, openid=f"o-{uuid.uuid4().hex[:8]}"), mode="safe", timeout=5)
            if tag in (reply.content or ""):
                seen_at = time.monotonic() - saved
                break
            time.sleep(0.1)
        if seen_at is None:
            late = time.monotonic() + 15
            while time.monotonic() < late and " bot " not in apps[1].log_text():
                time.sleep(0.1)
            reloads = [line for line in apps[1].log_text().splitlines() if " bot " in line]
            pytest.fail(f"the other process did not answer with the edit within 2 s; its reload, {time.monotonic() - saved:.1f} s after the save: {reloads}")
        deadline = time.monotonic() + 5
        while tag not in (servers[0].send(text_message(question, openid="o-check"), mode="safe").content or ""):
            assert time.monotonic() < deadline, "the saving side never served its own edit"
            time.sleep(0.05)
        stop.set()
        asker.join(10)
        assert replies >= 4 and failures == []
        for app in apps:
            assert "Traceback" not in app.log_text() and "knowledge version 1 live" in app.log_text()
    finally:
        for app in apps:
            app.stop()
