"""试一试: what the bot would decide and reply to a first message, with the live or a draft knowledge base.

Staff pick whom the bot answers (回答对象, the profile's default audience unless
chosen): a real student is asked who they are before an answer that differs by
audience, and staff want to read that answer, not the question.

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
    audience: str = ""


def answering_as(kb: KnowledgeBase, audience: str | None) -> str:
    """The audience a trial answers as: the one asked for if the profile knows it, else the default audience."""
    return audience if audience in kb.profile.audiences else kb.profile.default_audience


def run(kb: KnowledgeBase, matcher: Matcher, question: str, audience: str | None = None) -> Trial:
    """The decision, the ranked candidates with their confidence, the reply and every page of the answer, for a
    student whose audience is ``audience`` (default: the profile's default audience)."""
    question = question.strip()[:MAX_QUESTION]
    chosen = answering_as(kb, audience)
    outcome = respond(handlers.Context(kb=kb, matcher=matcher, session={"audience": chosen}), question)
    report = _report(question, outcome)
    offered = set(report["candidates"]) if report["action"] == "clarify" else {report["id"]}
    ranked = matcher.rank(question)[:SHOWN_CANDIDATES]
    candidates = [
        {"id": entry_id, "question": kb.entries[entry_id].question if entry_id in kb.entries else "", "score": round(score, 3), "offered": entry_id in offered}
        for entry_id, score in ranked
    ]
    pages = kb.paginate(outcome.answer) if outcome.answer else ([report["reply"]] if report["reply"] else [])
    return Trial(question, report["action"], report["id"], report["score"], report["reply"], pages, candidates, chosen)


@bp.context_processor
def _try_audiences() -> dict[str, Any]:
    """The 回答对象 choices of every 试一试 form: (key, label) of the live profile's audiences, and the default."""
    def try_audiences() -> list[tuple[str, str]]:
        return [(key, audience.label) for key, audience in live_pair()[0].profile.audiences.items()]

    return {"try_audiences": try_audiences, "default_try_audience": lambda: live_pair()[0].profile.default_audience}


@bp.get("/try")
@login_required
def try_live() -> Any:
    question = request.args.get("q", "").strip()
    kb, matcher = live_pair()
    audience = answering_as(kb, request.args.get("audience"))
    trial = run(kb, matcher, question, audience) if question else None
    return render_template("admin/try.html", trial=trial, question=question, try_audience=audience)
