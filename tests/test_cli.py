"""``flask kb validate`` and ``flask kb ask``, run as staff run them (a real subprocess)."""
from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import yaml

from conftest import ROOT
from knowledge.base import KnowledgeBase

FLASK = str(Path(sys.executable).parent / "flask")
ACTIONS = {"answer", "clarify", "fallback", "greeting", "thanks", "human", "help"}


def flask(*args: str, stdin: str | None = None, knowledge: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "REDIS_", "FLASK_"))}
    if knowledge is not None:
        env["KNOWLEDGE_DIR"] = str(knowledge)
    return subprocess.run([FLASK, *args], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=120)


def test_validate_accepts_the_shipped_knowledge() -> None:
    result = flask("kb", "validate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK:")


def _edit_yaml(path: Path, change: Callable[[dict], None]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def _entry(folder: Path, entry_id: str, change: Callable[[dict], None]) -> None:
    _edit_yaml(folder / "entries" / f"{entry_id}.yaml", lambda data: change(data["entry"]))


BROKEN: dict[str, tuple[Callable[[Path], None], str]] = {
    "schema error": (lambda f: _entry(f, "diploma-lost", lambda e: e.pop("question")), "[diploma-lost]: question: Field required"),
    "too few similar questions": (lambda f: _entry(f, "diploma-lost", lambda e: e.update(similar=e["similar"][:2])), "[diploma-lost]: similar"),
    "empty answer": (lambda f: _entry(f, "xueli-query", lambda e: e.update(answer="   ")), "[xueli-query]: answer"),
    "duplicate id": (
        lambda f: shutil.copy(f / "entries" / "diploma-lost.yaml", f / "entries" / "diploma-lost-copy.yaml"),
        "[diploma-lost]: duplicate id",
    ),
    "similar question in two entries": (
        lambda f: _entry(f, "xueli-query", lambda e: e["similar"].append("毕业证丢了怎么补办才行呢")) or _entry(f, "diploma-lost", lambda e: e["similar"].append("毕业证丢了怎么补办才行呢")),
        "is also in",
    ),
    "catalogue id missing": (lambda f: (f / "entries" / "chsi-contact.yaml").unlink(), "[chsi-contact]: catalogue id has no entry"),
    "unknown placeholder": (lambda f: _entry(f, "xueli-query", lambda e: e.update(answer=e["answer"] + "\n{office_fax}")), "unknown placeholder(s): office_fax"),
    "link not https": (
        lambda f: _entry(f, "xueli-query", lambda e: e.update(links=[{"title": "学信网", "url": "http://www.chsi.com.cn/"}])),
        "is not a well-formed https",
    ),
    "bot text over the byte limit": (
        lambda f: _edit_yaml(f / "texts.yaml", lambda d: d["texts"].update(welcome="欢迎" * 400)),
        "texts.yaml [welcome]: 2400 bytes, over 2047",
    ),
    "bot text missing": (lambda f: _edit_yaml(f / "texts.yaml", lambda d: d["texts"].pop("fallback")), "texts.yaml [fallback]: missing or empty"),
    "unknown audience variant": (
        lambda f: _entry(f, "xueli-query", lambda e: e.update(variants=[{"audience": "alumni", "answer": "x"}])),
        "variant for unknown audience 'alumni'",
    ),
    "menu points at a missing entry": (
        lambda f: _edit_yaml(f / "menu.yaml", lambda d: d["button"][0]["sub_button"][0].update(entry="no-such-entry")),
        "unknown entry 'no-such-entry'",
    ),
    "menu name too long": (
        lambda f: _edit_yaml(f / "menu.yaml", lambda d: d["button"][0].update(name="学籍学历相关问题")),
        "over 16 bytes",
    ),
    "rule pointing at a missing entry": (
        lambda f: _edit_yaml(f / "rules.yaml", lambda d: d["rules"][0].update(entry="no-such-entry")),
        "unknown entry 'no-such-entry'",
    ),
    "synonym in two families": (
        lambda f: _edit_yaml(f / "lexicon" / "synonyms.yaml", lambda d: d[next(iter(d))].append(d[list(d)[1]][0])),
        "is in both",
    ),
    "yaml syntax error": (lambda f: (f / "entries" / "xueli-query.yaml").write_text("entry: [unclosed", encoding="utf-8"), "entries/xueli-query.yaml: cannot read"),
}


@pytest.mark.parametrize("kind", BROKEN)
def test_validate_reports_each_kind_of_problem(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "knowledge"
    shutil.copytree(ROOT / "knowledge", folder)
    breaks, expected = BROKEN[kind]
    breaks(folder)
    result = flask("kb", "validate", knowledge=folder)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr


def _ask_json(lines: list[str]) -> list[dict]:
    result = flask("kb", "ask", "--json", stdin="".join(line + "\n" for line in lines))
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert len(out) == len(lines)
    return [json.loads(line) for line in out]


def test_ask_json_emits_one_valid_object_per_input_line(kb: KnowledgeBase) -> None:
    lines = [kb.entries["diploma-lost"].question, "", "   ", "学" * 20000, "你好", "转人工", "😂😂😂", '"quoted" \\ back\tslash', "更多", "2"]
    reports = _ask_json(lines)
    for line, report in zip(lines, reports):
        assert set(report) == {"question", "action", "id", "candidates", "score", "answer", "reply"}
        assert report["question"] == line
        assert report["action"] in ACTIONS
        assert isinstance(report["candidates"], list) and isinstance(report["score"], float)
        assert report["reply"]
        if report["action"] == "answer" and report["id"]:
            assert report["answer"] and report["id"] in kb.entries
        if report["action"] == "clarify":
            assert 2 <= len(report["candidates"]) <= 4
    assert reports[0]["action"] == "answer" and reports[0]["id"] == "diploma-lost"
    assert reports[0]["reply"] == kb.pages("diploma-lost")[0]
    assert reports[0]["answer"] == kb.render("diploma-lost")
    assert reports[1]["action"] == reports[2]["action"] == "fallback"
    assert reports[5]["action"] == "human" and reports[5]["reply"] == kb.text("human")


def test_ask_answers_each_line_as_it_is_read(kb: KnowledgeBase) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "REDIS_", "FLASK_"))}
    process = subprocess.Popen([FLASK, "kb", "ask", "--json"], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    try:
        for entry_id in ("xueli-query", "chsi-contact"):
            process.stdin.write(kb.entries[entry_id].question + "\n")
            process.stdin.flush()
            ready, _, _ = select.select([process.stdout], [], [], 60)
            assert ready, "no answer before the next question was sent"
            assert json.loads(process.stdout.readline())["id"] == entry_id
    finally:
        process.stdin.close()
        process.wait(timeout=30)
    assert process.returncode == 0


def test_ask_readable_view_names_the_decision(kb: KnowledgeBase) -> None:
    result = flask("kb", "ask", kb.entries["xueli-query"].question)
    assert result.returncode == 0, result.stderr
    assert "answer xueli-query" in result.stdout


def test_ask_works_even_when_no_token_or_redis_is_configured() -> None:
    result = flask("kb", "ask", "--json", "你好")
    assert result.returncode == 0 and json.loads(result.stdout)["action"] == "greeting"
