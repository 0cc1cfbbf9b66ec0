"""What the console's pages share: the live store, the live and draft matchers, "what would change".

A draft (the knowledge with a staff member's unsaved changes) costs a matcher
build, so the last few are kept per process, keyed by the live version and the
exact changes: 试一试, the preview and the confirmed save of one edit build it once.
"""
from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

from flask import current_app

import bot
from knowledge import impact as impact_module
from knowledge.base import KnowledgeBase
from knowledge.live import LiveKnowledge
from knowledge.matcher import Match, Matcher

Changes = dict[str, str | None]
_DRAFTS_KEPT = 4
_lock = threading.Lock()


def live() -> LiveKnowledge:
    """The process's live knowledge store (built once per app)."""
    app = current_app
    found = app.extensions.get("xueji_live")
    if found is None:
        with _lock:
            found = app.extensions.get("xueji_live")
            if found is None:
                found = bot.live_knowledge(app.config, bot.current().store)
                app.extensions["xueji_live"] = found
    return found


def live_pair() -> tuple[KnowledgeBase, Matcher]:
    """The knowledge base and matcher the webhook of this process answers with right now."""
    return bot.current().knowledge_pair


def _drafts() -> "OrderedDict[str, tuple[KnowledgeBase, Matcher]]":
    return current_app.extensions.setdefault("xueji_drafts", OrderedDict())


def draft(changes: Changes) -> tuple[KnowledgeBase, Matcher]:
    """The knowledge with ``changes`` applied (raises ``knowledge.live.Invalid``); no changes = the live one."""
    if not changes:
        return live_pair()
    store = live()
    key = hashlib.sha256(json.dumps([store.version(), sorted(changes.items(), key=lambda kv: kv[0])], ensure_ascii=False).encode()).hexdigest()
    drafts = _drafts()
    with _lock:
        if key in drafts:
            drafts.move_to_end(key)
            return drafts[key]
    built = store.draft(changes)
    with _lock:
        drafts[key] = built
        while len(drafts) > _DRAFTS_KEPT:
            drafts.popitem(last=False)
    return built


@functools.lru_cache(maxsize=1)
def _labelled() -> tuple[tuple[str, str], ...]:
    """The repo's labelled questions: files shipped with the code, read once per process."""
    return tuple(impact_module.labelled_questions())


class _Remembered:
    """The live matcher's decisions, remembered: every preview at one live version asks the same questions."""

    def __init__(self, matcher: Matcher):
        self.matcher = matcher
        self.decisions: dict[str, Match] = {}

    def match(self, question: str) -> Match:
        found = self.decisions.get(question)
        if found is None:
            found = self.decisions[question] = self.matcher.match(question)
        return found


def _live_decisions() -> _Remembered:
    _, matcher = live_pair()
    with _lock:
        remembered = current_app.extensions.get("xueji_live_decisions")
        if remembered is None or remembered.matcher is not matcher:
            remembered = current_app.extensions["xueji_live_decisions"] = _Remembered(matcher)
    return remembered


def questions_to_check() -> list[tuple[str, str]]:
    """Every labelled question the repo ships, then the recorded unanswered ones (each once)."""
    seen: set[str] = set()
    questions: list[tuple[str, str]] = []
    for text, source in _labelled():
        if text not in seen:
            seen.add(text)
            questions.append((text, source))
    for group in bot.current().store.unanswered_groups(limit=500):
        if group["text"] not in seen:
            seen.add(group["text"])
            questions.append((group["text"], "unanswered"))
    return questions


def what_would_change(changes: Changes) -> list[dict[str, Any]]:
    """Decisions that differ between the live matcher and the draft (old → new)."""
    _, new = draft(changes)
    return impact_module.impact(_live_decisions(), new, questions_to_check())
