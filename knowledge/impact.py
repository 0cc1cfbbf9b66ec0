"""What an edit would change: the labelled questions whose decision differs between two matchers.

Before a save the console runs every labelled question the repo ships (the dev
set, the bench sets) and the recorded unanswered questions through the live
matcher and the draft's, and shows the ones that would now get another answer,
so "adding 学历备案表 to one entry takes three questions away from another" is
seen before it goes live.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Protocol

import yaml

from .base import SAFE_LOADER
from .matcher import Match

ROOT = Path(__file__).resolve().parent.parent
DEV_SET = ROOT.parent / "shared" / "eval" / "dev-questions.yaml"
BENCH = ROOT / "bench"


def _questions(node: Any) -> Iterable[str]:
    """Every question in a question file, whatever its sections: ``{q: …}`` items and plain strings in lists."""
    if isinstance(node, dict):
        if isinstance(node.get("q"), str):
            yield node["q"]
            return
        for value in node.values():
            yield from _questions(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, str):
                yield item
            else:
                yield from _questions(item)


def labelled_questions(dev_set: Path = DEV_SET, bench: Path = BENCH) -> list[tuple[str, str]]:
    """(question, source file name) for the dev set (if present) and bench/*-questions.yaml, bench/blind-*.yaml; each question once."""
    paths = [dev_set] if dev_set.exists() else []
    paths += sorted(bench.glob("*-questions.yaml")) + sorted(bench.glob("blind-*.yaml"))
    seen: dict[str, str] = {}
    for path in paths:
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)
        except (OSError, yaml.YAMLError):
            continue
        for question in _questions(data):
            question = question.strip()
            if question and question not in seen:
                seen[question] = path.name
    return list(seen.items())


class Decides(Protocol):
    """A matcher, or anything that answers like one (the console remembers the live matcher's decisions)."""

    def match(self, question: str) -> Match: ...


def _decision(match: Match) -> tuple[str, str | None, tuple[str, ...]]:
    return match.action, match.entry_id, tuple(match.candidates) if match.action == "clarify" else ()


def impact(old: Decides, new: Decides, questions: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """The questions whose decision (action, entry, clarify list) differs, old → new, in the order given."""
    changed = []
    for question, source in questions:
        before, after = old.match(question), new.match(question)
        if _decision(before) != _decision(after):
            changed.append({
                "question": question,
                "source": source,
                "old_action": before.action,
                "old_id": before.entry_id,
                "old_candidates": list(before.candidates) if before.action == "clarify" else [],
                "new_action": after.action,
                "new_id": after.entry_id,
                "new_candidates": list(after.candidates) if after.action == "clarify" else [],
            })
    return changed
