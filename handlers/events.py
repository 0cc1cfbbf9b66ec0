"""Events: follow, unfollow, menu clicks; every other event is acknowledged without a reply."""
from __future__ import annotations

from typing import Any

from state import Effects

from . import Context, Outcome, handles
from .dialog import answer_entry, group_list, help_list, welcome


@handles("event:subscribe", "event:subscribe_scan")
def on_subscribe(message: Any, ctx: Context) -> Outcome:
    """The welcome: the most asked topics as a numbered list, and how to reach a person."""
    return welcome(ctx)


@handles("event:unsubscribe")
def on_unsubscribe(message: Any, ctx: Context) -> Outcome:
    """WeChat asks developers to delete a student's data when they unfollow: every per-student key goes."""
    return Outcome(reply=None, effects=Effects(outcome="unsubscribe", forget=True))


@handles("event:click")
def on_click(message: Any, ctx: Context) -> Outcome:
    """A tap: an entry's answer, a group's numbered list, or one of the bot's texts."""
    button = ctx.kb.menu_action(message.key or "")
    if button is None:
        return Outcome(reply=ctx.kb.text("unknown_menu"), effects=Effects(outcome="menu_unknown"))
    audience = ctx.session.get("audience") if ctx.session.get("audience") in ctx.kb.profile.audiences else None
    if button.entry:
        return answer_entry(ctx, button.entry, audience, "menu")
    if button.group:
        return group_list(ctx, button.group, "menu")
    if button.text == "help":
        return help_list(ctx, "menu")
    return Outcome(reply=ctx.kb.text(button.text, audience), effects=Effects(outcome="menu"))


@handles("event")
def on_other_event(message: Any, ctx: Context) -> Outcome:
    return Outcome(reply=None, effects=Effects(outcome="event"))
