"""Decide what to say to one message.

Handlers are small functions registered per message type (and event), as in
WeRoBot: ``dispatch`` finds the one for a message and returns an ``Outcome``
— the reply text (None for "no reply") and the effects to record. Handlers
never touch Redis or the HTTP layer: they read the student's session from the
``Context`` and describe changes in ``Effects``; the webhook stores them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from knowledge.base import KnowledgeBase
from knowledge.matcher import Match, Matcher
from state import Effects


@dataclass(frozen=True)
class Context:
    """What a handler may read: the knowledge, the student's session (``audience`` merged in) and how to behave.

    ``stateful`` is False while Redis is down: nothing said now will be remembered, so no list may expect a
    number back. ``handoff`` is ``HUMAN_HANDOFF`` ("contacts" or "kf"). ``ask_audience`` is False for the
    one-shot ``flask kb ask`` view, which shows the answer rather than the question about the audience.
    """

    kb: KnowledgeBase
    matcher: Matcher
    session: dict[str, Any] = field(default_factory=dict)
    stateful: bool = True
    handoff: str = "contacts"
    ask_audience: bool = True


@dataclass
class Outcome:
    """The reply (None: answer "success", no message) and its effects; ``transfer`` hands the message to 多客服."""

    reply: str | None
    effects: Effects
    match: Match | None = None
    answer: str = ""
    transfer: bool = False


Handler = Callable[[Any, Context], Outcome]
_HANDLERS: dict[tuple[str, str | None], Handler] = {}


def handles(*kinds: str) -> Callable[[Handler], Handler]:
    """Register a handler for message types (``"text"``) or events (``"event:click"``)."""

    def register(fn: Handler) -> Handler:
        for kind in kinds:
            msg_type, _, event = kind.partition(":")
            _HANDLERS[(msg_type, event or None)] = fn
        return fn

    return register


def dispatch(msg_type: str, event: str | None, message: Any, ctx: Context) -> Outcome:
    """Run the handler for this message type/event, or the catch-all for anything unknown."""
    handler = _HANDLERS.get((msg_type, event)) or _HANDLERS.get((msg_type, None)) or _HANDLERS[("*", None)]
    return handler(message, ctx)


from . import events, media, text  # noqa: E402,F401  (registers the handlers)
