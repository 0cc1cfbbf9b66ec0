"""Messages the bot cannot read (pictures, video, places, links, files), and unknown types."""
from __future__ import annotations

from typing import Any

from state import Effects

from . import Context, Outcome, handles


@handles("image", "video", "shortvideo", "location", "link", "file", "miniprogrampage")
def on_media(message: Any, ctx: Context) -> Outcome:
    """Say what the bot can do instead of staying silent (or pass it on while 多客服 has the student)."""
    if ctx.session.get("human") and ctx.handoff == "kf":
        return Outcome(reply=None, effects=Effects(outcome="human", session=dict(ctx.session)), transfer=True)
    return Outcome(reply=ctx.kb.text("media"), effects=Effects(outcome="media"))


@handles("*")
def on_unknown(message: Any, ctx: Context) -> Outcome:
    """A message type WeChat may add later: acknowledge it, do not fail."""
    return Outcome(reply=None, effects=Effects(outcome="unknown"))
