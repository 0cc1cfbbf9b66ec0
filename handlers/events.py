"""Events: follow, unfollow, menu clicks; every other event is acknowledged without a reply."""
from __future__ import annotations

from typing import Any

from state import Effects

from . import Context, Outcome, handles
from .text import answer_entry


@handles("event:subscribe", "event:subscribe_scan")
def on_subscribe(message: Any, ctx: Context) -> Outcome:
    return Outcome(reply=ctx.kb.text("welcome"), effects=Effects(outcome="subscribe"))


@handles("event:unsubscribe")
def on_unsubscribe(message: Any, ctx: Context) -> Outcome:
    """WeChat asks developers to delete a student's data when they unfollow."""
    return Outcome(reply=None, effects=Effects(outcome="unsubscribe", forget=True))


@handles("event:click")
def on_click(message: Any, ctx: Context) -> Outcome:
    button = ctx.kb.menu_action(message.key or "")
    if button is None:
        return Outcome(reply=ctx.kb.text("unknown_menu"), effects=Effects(outcome="menu_unknown"))
    if button.entry:
        return answer_entry(ctx, button.entry, ctx.session.get("audience"), "menu")
    return Outcome(reply=ctx.kb.text(button.text), effects=Effects(outcome="menu"))


@handles("event")
def on_other_event(message: Any, ctx: Context) -> Outcome:
    return Outcome(reply=None, effects=Effects(outcome="event"))
