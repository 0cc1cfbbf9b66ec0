"""Text and voice: both go through the same conversation (``handlers.dialog``), choices and pages included."""
from __future__ import annotations

from typing import Any

from state import Effects

from . import Context, Outcome, handles
from .dialog import SMALL_TALK, answer_entry, respond

__all__ = ["SMALL_TALK", "answer_entry", "respond"]


@handles("text")
def on_text(message: Any, ctx: Context) -> Outcome:
    return respond(ctx, message.content or "")


@handles("voice")
def on_voice(message: Any, ctx: Context) -> Outcome:
    recognition = (message.recognition or "").strip()
    if not recognition:
        return Outcome(reply=ctx.kb.text("voice_unrecognized"), effects=Effects(outcome="voice_unrecognized"))
    return respond(ctx, recognition)
