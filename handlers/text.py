"""Text and voice: the knowledge pipeline, plus the follow-ups a session makes possible.

A follow-up refers to the last reply: 「更多」 serves the next page of a long
answer, a number picks an entry from the last "你是不是想问" list. Anything
else goes to the matcher, and its decision becomes the reply.
"""
from __future__ import annotations

from typing import Any

from knowledge.matcher import Match
from knowledge.text import compact
from state import Effects

from . import Context, Outcome, handles

SMALL_TALK = ("greeting", "thanks", "human", "help")


def answer_entry(ctx: Context, entry_id: str, audience: str | None, outcome: str, match: Match | None = None) -> Outcome:
    """First page of an entry's answer; the rest waits in the session for 「更多」."""
    answer = ctx.kb.render(entry_id, audience)
    pages = ctx.kb.paginate(answer)
    session = {"audience": audience} if audience else {}
    if len(pages) > 1:
        session["pages"] = pages[1:]
    return Outcome(
        reply=pages[0],
        effects=Effects(outcome=outcome, topic=entry_id, session=session),
        match=match,
        answer=answer,
    )


def _clarify(ctx: Context, match: Match, audience: str | None) -> Outcome:
    kb = ctx.kb
    items = [kb.text("clarify_item", n=str(i), question=kb.entries[c].question) for i, c in enumerate(match.candidates, 1)]
    reply = "\n".join([kb.text("clarify_intro"), *items, kb.text("clarify_outro")])
    session: dict[str, Any] = {"candidates": list(match.candidates)}
    if audience:
        session["audience"] = audience
    return Outcome(reply=reply, effects=Effects(outcome="clarify", session=session), match=match)


def _follow_up(ctx: Context, text: str) -> Outcome | None:
    """「更多」 or a list number, read the way students type them (「更多。」, 「２」)."""
    session = ctx.session
    audience = session.get("audience")
    word = compact(text)
    if word in ctx.kb.more_words:
        pages = session.get("pages") or []
        if not pages:
            return Outcome(reply=ctx.kb.text("no_more"), effects=Effects(outcome="more"))
        rest = {k: v for k, v in session.items() if k != "pages"}
        if pages[1:]:
            rest["pages"] = pages[1:]
        return Outcome(reply=pages[0], effects=Effects(outcome="more", session=rest))
    candidates = session.get("candidates") or []
    if word.isdigit() and candidates:
        number = int(word)
        if 1 <= number <= len(candidates) and candidates[number - 1] in ctx.kb.entries:
            return answer_entry(ctx, candidates[number - 1], audience, "answer")
    return None


def respond(ctx: Context, text: str) -> Outcome:
    """The reply to one typed (or recognised) question, as the student will see it."""
    text = text.strip()
    follow_up = _follow_up(ctx, text)
    if follow_up is not None:
        return follow_up
    match = ctx.matcher.match(text)
    audience = match.audience or ctx.session.get("audience")
    kb = ctx.kb
    if match.entry_id and match.action in ("answer", "rule"):
        return answer_entry(ctx, match.entry_id, audience, match.action, match)
    if match.action == "clarify" and match.candidates:
        return _clarify(ctx, match, audience)
    if match.action == "rule" and (match.text_key or match.text):
        reply = kb.text(match.text_key) if match.text_key else match.text
        return Outcome(reply=reply, effects=Effects(outcome="rule"), match=match)
    if match.action in SMALL_TALK:
        return Outcome(reply=kb.text(match.action), effects=Effects(outcome=match.action), match=match)
    return Outcome(reply=kb.text("fallback"), effects=Effects(outcome="fallback", unanswered=text[:200]), match=match)


@handles("text")
def on_text(message: Any, ctx: Context) -> Outcome:
    return respond(ctx, message.content or "")


@handles("voice")
def on_voice(message: Any, ctx: Context) -> Outcome:
    recognition = (message.recognition or "").strip()
    if not recognition:
        return Outcome(reply=ctx.kb.text("voice_unrecognized"), effects=Effects(outcome="voice_unrecognized"))
    return respond(ctx, recognition)
