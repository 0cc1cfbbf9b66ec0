"""试一试: what the bot would decide and reply to a first message, with the live or a draft knowledge base.

The decision goes through ``handlers.text.respond`` and ``cli._report``, the
code behind the webhook and ``flask kb ask --json``, so what staff see here is
what a student gets.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import render_template, request

import handlers
from cli import _report
from handlers.text import respond
from knowledge.base import KnowledgeBase
from knowledge.matcher import Matcher

from . import bp
from .auth import login_required
from .service import live_pair

MAX_QUESTION = 200
SHOWN_CANDIDATES = 5


@dataclass
class Trial:
    question: str
    action: str
    entry_id: str | None
    score: float
    reply: str
    pages: list[str]
    candidates: list[dict[str, Any]] = field(default_factory=list)


def run(kb: KnowledgeBase, matcher: Matcher, question: str) -> Trial:
    """The decision, the ranked candidates with their confidence, the reply and every page of the answer."""
    question = question.strip()[:MAX_QUESTION]
    outcome = respond(handlers.Context(kb=kb, matcher=matcher), question)
    report = _report(question, outcome)
    offered = set(report["candidates"]) if report["action"] == "clarify" else {report["id"]}
    ranked = matcher.rank(question)[:SHOWN_CANDIDATES]
    candidates = [
        {"id": entry_id, "question": kb.entries[entry_id].question if entry_id in kb.entries else "", "score": round(score, 3), "offered": entry_id in offered}
        for entry_id, score in ranked
    ]
    pages = kb.paginate(outcome.answer) if outcome.answer else ([report["reply"]] if report["reply"] else [])
    return Trial(question, report["action"], report["id"], report["score"], report["reply"], pages, candidates)


@bp.get("/try")
@login_required
def try_live() -> Any:
    question = request.args.get("q", "").strip()
    trial = run(*live_pair(), question) if question else None
    return render_template("admin/try.html", trial=trial, question=question)
