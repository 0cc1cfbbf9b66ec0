"""A conversation a student can finish: numbered lists, pages, who the student is, 「没用」 and 转人工.

Everything the next message may refer to lives in the session (Redis, idle TTL)
and is rebuilt on every turn, so a new question drops what the last one left:

- ``list``: the numbered list last sent — ``kind`` (clarify, welcome, help, group,
  feedback, audience), ``items`` (entry ids, group keys or audience keys) and, for a
  clarify list, the question ``q`` it answered;
- ``pages``: the pages of the last answer not sent yet, for 「更多」;
- ``pending``: the question waiting for the student's audience;
- ``last``: the entry last answered and its question, for 「没用」;
- ``fallbacks``: fallbacks in a row (the second hands the student over);
- ``human``: 多客服 has the student (``HUMAN_HANDOFF=kf``) until 「结束人工」.

The remembered audience is not in the session: it arrives merged in as
``audience`` and changes only through ``Effects.audience``.
"""
from __future__ import annotations

from typing import Any

from knowledge.matcher import Match
from knowledge.text import compact
from state import Effects

from . import Context, Outcome

SMALL_TALK = ("greeting", "thanks", "human", "help")
MAX_ALTERNATIVES = 3
UNANSWERED_CHARS = 200
LIST_KINDS_OF_ENTRIES = ("clarify", "welcome", "group", "feedback")


def _carry(ctx: Context) -> dict[str, Any]:
    """What every turn keeps: the 多客服 flag. Lists, pages and the rest last one turn."""
    return {"human": True} if ctx.session.get("human") else {}


def _outcome(ctx: Context, reply: str | None, outcome: str, session: dict[str, Any] | None = None, **effects: Any) -> Outcome:
    match = effects.pop("match", None)
    answer = effects.pop("answer", "")
    transfer = effects.pop("transfer", False)
    merged = {**_carry(ctx), **(session or {})}
    return Outcome(reply=reply, effects=Effects(outcome=outcome, session=merged, **effects), match=match, answer=answer, transfer=transfer)


# --- numbered lists -----------------------------------------------------------------------

def _labels(ctx: Context, kind: str, items: list[str]) -> list[str]:
    kb = ctx.kb
    if kind == "help":
        return [kb.conversation.groups[key].title for key in items if key in kb.conversation.groups]
    if kind == "audience":
        return [kb.label(key) for key in items if key in kb.profile.audiences]
    return [kb.entries[i].question for i in items if i in kb.entries]


def _numbered(ctx: Context, kind: str, items: list[str], intro: str, outro: str) -> str:
    """A list the student answers with a number — or, when nothing can be remembered, with the words."""
    kb = ctx.kb
    lines = [intro, *(kb.text("clarify_item", n=str(n), question=label) for n, label in enumerate(_labels(ctx, kind, items), 1))]
    lines.append(outro if ctx.stateful else kb.text("list_outro_stateless"))
    return "\n".join(line for line in lines if line)


def send_list(ctx: Context, kind: str, items: list[str], intro: str, outro: str, outcome: str, **extra: Any) -> Outcome:
    """Send a numbered list and remember it, so the next message may pick from it."""
    session = {"list": {"kind": kind, "items": list(items), **extra}}
    return _outcome(ctx, _numbered(ctx, kind, items, intro, outro), outcome, session)


def welcome(ctx: Context) -> Outcome:
    kb = ctx.kb
    topics = [t for t in kb.conversation.welcome_topics if t in kb.entries]
    reply = send_list(ctx, "welcome", topics, kb.text("welcome"), kb.text("welcome_outro"), "subscribe")
    reply.effects.session = {"list": reply.effects.session["list"]}  # a follow starts afresh
    return reply


def help_list(ctx: Context, outcome: str = "help", match: Match | None = None) -> Outcome:
    kb = ctx.kb
    result = send_list(ctx, "help", list(kb.conversation.groups), kb.text("help"), kb.text("help_outro"), outcome)
    result.match = match
    return result


def group_list(ctx: Context, key: str, outcome: str) -> Outcome:
    kb = ctx.kb
    group = kb.conversation.groups[key]
    entries = [e for e in group.entries if e in kb.entries]
    return send_list(ctx, "group", entries, kb.text("group_intro", title=group.title), kb.text("group_outro"), outcome)


def _clarify(ctx: Context, match: Match, question: str) -> Outcome:
    kb = ctx.kb
    result = send_list(ctx, "clarify", list(match.candidates), kb.text("clarify_intro"), kb.text("clarify_outro"), "clarify",
                       q=question[:UNANSWERED_CHARS])
    result.match = match
    return result


def _ask_audience(ctx: Context, entry_id: str, question: str, intro: str = "") -> Outcome:
    kb = ctx.kb
    result = send_list(ctx, "audience", list(kb.profile.audiences), kb.text("audience_question"), "", "audience")
    result.effects.session["pending"] = {"entry": entry_id, "q": question[:UNANSWERED_CHARS]}
    if intro:
        result.reply = f"{intro}\n\n{result.reply}"
    return result


def _pick(ctx: Context, listed: dict[str, Any], number: int, audience: str | None) -> Outcome:
    kind, item = listed["kind"], listed["items"][number - 1]
    if kind == "help":
        return group_list(ctx, item, "choice")
    if kind == "audience":
        pending = ctx.session.get("pending") or {}
        return _audience_chosen(ctx, item, pending, ack=not pending)
    return answer_entry(ctx, item, audience, "choice", question=ctx.kb.entries[item].question)


def _from_list(ctx: Context, text: str, audience: str | None) -> Outcome | None:
    """A pick from the last list, the list again for a number out of range, or None for anything else."""
    listed = ctx.session.get("list")
    if not isinstance(listed, dict) or not listed.get("items"):
        return None
    kind = listed.get("kind")
    options = _labels(ctx, kind, listed["items"])
    if len(options) != len(listed["items"]):  # the knowledge changed under the list: treat as a new message
        return None
    picked = ctx.kb.conversation.choose(text, options)
    if picked is None and kind == "audience":
        picked = next((i for i, key in enumerate(listed["items"], 1)
                       if compact(text) in {compact(h) for h in ctx.kb.profile.audiences[key].hints}), None)
    if picked is None:
        return None
    if picked == 0:
        intro = ctx.kb.text("choice_out_of_range", count=str(len(options)))
        again = send_list(ctx, kind, listed["items"], intro, ctx.kb.text("clarify_outro"), "choice",
                          **{k: v for k, v in listed.items() if k not in ("kind", "items")})
        if ctx.session.get("pending"):
            again.effects.session["pending"] = ctx.session["pending"]
        return again
    return _pick(ctx, listed, picked, audience)


# --- answers ------------------------------------------------------------------------------

def answer_entry(ctx: Context, entry_id: str, audience: str | None, outcome: str, match: Match | None = None,
                 question: str = "", prefix: str = "") -> Outcome:
    """First page of an entry's answer for the student's audience; asks the audience first when it matters."""
    kb = ctx.kb
    if audience is None and kb.depends_on_audience(entry_id):
        if ctx.stateful and ctx.ask_audience:
            result = _ask_audience(ctx, entry_id, question or kb.entries[entry_id].question, prefix)
            result.match = match
            return result
    answer = kb.answer(entry_id, audience)
    if audience is None and kb.depends_on_audience(entry_id) and not ctx.stateful:
        answer = f"{answer}\n\n{kb.text('audience_hint_stateless')}"
    pages = kb.paginate(answer)
    session: dict[str, Any] = {"last": {"entry": entry_id, "q": (question or kb.entries[entry_id].question)[:UNANSWERED_CHARS]}}
    if len(pages) > 1:
        session["pages"] = pages[1:]
    reply = f"{prefix}\n\n{pages[0]}" if prefix else pages[0]
    return _outcome(ctx, reply, outcome, session, topic=entry_id, match=match, answer=answer)


def _audience_chosen(ctx: Context, audience: str, pending: dict[str, Any], ack: bool) -> Outcome:
    """The student said who they are: remember it, and answer the question that waited for it."""
    kb = ctx.kb
    said = kb.text("audience_set", audience)
    if pending.get("entry") in kb.entries:
        result = answer_entry(ctx, pending["entry"], audience, "answer", question=pending.get("q", ""), prefix=said if ack else "")
    else:
        result = _outcome(ctx, said, "audience")
    result.effects.audience = audience
    return result


def _more(ctx: Context) -> Outcome:
    pages = ctx.session.get("pages") or []
    session = {k: v for k, v in ctx.session.items() if k in ("last",)}
    if not pages:
        return _outcome(ctx, ctx.kb.text("no_more"), "more", session)
    if pages[1:]:
        session["pages"] = pages[1:]
    return _outcome(ctx, pages[0], "more", session)


def _feedback(ctx: Context) -> Outcome:
    """「没用」: the next best answers for the same question (those written for the student's audience), and a
    person; counted once against the entry."""
    kb = ctx.kb
    last = ctx.session.get("last")
    if not isinstance(last, dict) or last.get("entry") not in kb.entries:
        return _outcome(ctx, kb.text("feedback_nothing"), "feedback")
    entry_id, question = last["entry"], last.get("q") or kb.entries[last["entry"]].question
    audience = ctx.session.get("audience") if ctx.session.get("audience") in kb.profile.audiences else None
    others = [e for e, _ in ctx.matcher.rank(question)
              if e != entry_id and e in kb.entries and (audience is None or kb.fits(e, audience))][:MAX_ALTERNATIVES]
    effects = {"feedback": entry_id, "unanswered": question, "unanswered_kind": "feedback"}
    if not others:
        return _outcome(ctx, kb.text("feedback_nothing"), "feedback", **effects)
    result = send_list(ctx, "feedback", others, kb.text("feedback"), kb.text("feedback_outro"), "feedback")
    for name, value in effects.items():
        setattr(result.effects, name, value)
    return result


def human(ctx: Context, audience: str | None, match: Match | None = None, intro: str = "") -> Outcome:
    """Hand the student over: to 多客服 (``HUMAN_HANDOFF=kf``) or with the contacts of their own office."""
    kb = ctx.kb
    if ctx.handoff == "kf":
        return _outcome(ctx, None, "human", {"human": True}, transfer=True, match=match)
    contacts = kb.text("human_audience", audience) if audience in kb.profile.audiences else kb.text("human")
    return _outcome(ctx, f"{intro}\n{contacts}" if intro else contacts, "human", match=match)


def _recordable(text: str) -> bool:
    """A real question worth a teacher's look: words, not a bare number or a symbol."""
    word = compact(text)
    return bool(word) and not word.isdigit() and len(word) >= 2


def _fallback(ctx: Context, text: str, audience: str | None, match: Match) -> Outcome:
    kb = ctx.kb
    if ctx.session.get("fallbacks"):
        result = human(ctx, audience, match, intro=kb.text("fallback_again"))
    else:
        recorded = ctx.stateful and _recordable(text)
        office = kb.text("fallback_office", audience) if audience in kb.profile.audiences else kb.text("fallback_office_unknown")
        reply = kb.text("fallback", audience, recorded=kb.text("fallback_recorded") if recorded else "", office_line=office)
        result = _outcome(ctx, reply, "fallback", {"fallbacks": 1}, match=match)
    if ctx.stateful and _recordable(text):
        result.effects.unanswered = text[:UNANSWERED_CHARS]
    return result


# --- one message --------------------------------------------------------------------------

def _question(ctx: Context, text: str, audience: str | None, prefix: str = "") -> Outcome:
    """A new question: the matcher decides, the student's audience shapes the answer."""
    kb = ctx.kb
    match = ctx.matcher.match(text)
    audience = match.audience or audience
    if match.entry_id and match.action in ("answer", "rule"):
        return answer_entry(ctx, match.entry_id, audience, match.action, match, question=text, prefix=prefix)
    if match.action == "clarify" and match.candidates:
        return _clarify(ctx, match, text)
    if match.action == "rule" and (match.text_key or match.text):
        reply = kb.text(match.text_key, audience) if match.text_key else match.text
        return _outcome(ctx, reply, "rule", match=match)
    if match.action == "human":
        return human(ctx, audience, match)
    if match.action == "help":
        return help_list(ctx, match=match)
    if match.action in SMALL_TALK:
        return _outcome(ctx, kb.text(match.action, audience), match.action, match=match)
    return _fallback(ctx, text, audience, match)


def _turn(ctx: Context, text: str) -> tuple[Outcome, bool]:
    """The reply, and whether the message answered the last list (a pick, or a number out of range)."""
    kb, conv = ctx.kb, ctx.kb.conversation
    session = ctx.session
    audience = session.get("audience") if session.get("audience") in kb.profile.audiences else None
    word = compact(text)
    if session.get("human") and ctx.handoff == "kf":
        if word in conv.end_human:
            return Outcome(kb.text("human_ended"), Effects(outcome="human", session={})), False
        return _outcome(ctx, None, "human", transfer=True), False
    if word in conv.end_human:
        return _outcome(ctx, kb.text("human_ended"), "human"), False
    if word in conv.reset_audience:
        result = send_list(ctx, "audience", list(kb.profile.audiences), kb.text("audience_question_reset"), "", "audience")
        result.effects.audience = ""
        return result, False
    picked = _from_list(ctx, text, audience)
    if picked is not None:
        return picked, True
    stated, rest = conv.statement(text, {k: a.hints + [a.label] for k, a in kb.profile.audiences.items()})
    if stated:
        pending = session.get("pending") or {}
        if compact(rest):
            result = _question(ctx, rest, stated, prefix=kb.text("audience_set", stated))
            result.effects.audience = stated
            return result, False
        return _audience_chosen(ctx, stated, pending, ack=True), False
    if word in kb.more_words:
        return _more(ctx), False
    if word in conv.feedback:
        return _feedback(ctx), False
    if conv.number(text) is not None:
        return _outcome(ctx, kb.text("number_without_list"), "choice"), False
    return _question(ctx, text, audience), False


def respond(ctx: Context, text: str) -> Outcome:
    """The reply to one typed (or recognised) message, as the student will see it.

    A clarify list the student did not pick from is recorded as an unanswered question (kind "clarify")
    once the next message moves on, unless that message is itself recorded.
    """
    text = text.strip()
    result, answered_list = _turn(ctx, text)
    listed = ctx.session.get("list")
    if (isinstance(listed, dict) and listed.get("kind") == "clarify" and listed.get("q")
            and not answered_list and not result.effects.unanswered and ctx.stateful):
        result.effects.unanswered = listed["q"]
        result.effects.unanswered_kind = "clarify"
    return result
