"""The one way a console form changes the knowledge: draft → 试一试 / what would change → save.

Every edit page (entries, rules, texts, out-of-domain examples) posts its
buttons as ``action`` = ``try`` | ``save`` | ``confirm``: ``try`` answers the
question in ``try_question`` with the draft, ``save`` validates the draft and
shows the decisions that would change (saving at once when none would),
``confirm`` saves. ``base_rev`` (hidden) is the file's revision when the form
was opened; a save on top of someone else's newer one is a ``Conflict``.
"""
from __future__ import annotations

from typing import Any, Callable

import yaml
from flask import flash, redirect, request

from knowledge.base import Problem
from knowledge.live import Conflict, Invalid

from .auth import current_user
from .service import draft, live, what_would_change
from .trial import run as run_trial

Render = Callable[..., Any]
Place = Callable[[list[Problem]], tuple[dict[str, list[Any]], list[Any]]]


def base_rev(default: int) -> int:
    try:
        return int(request.form.get("base_rev", default))
    except ValueError:
        return default


def _same(old: str | None, new: str | None) -> bool:
    """The same data, whatever the layout of the YAML."""
    if old is None or new is None:
        return old is new
    try:
        return yaml.safe_load(old) == yaml.safe_load(new)
    except yaml.YAMLError:
        return old == new


def submit(changes: dict[str, str | None], render: Render, place: Place, done_url: str, what: str, after_save: Callable[[], None] | None = None) -> Any:
    """Run the posted action on ``changes``; ``render(status, **context)`` shows the form again."""
    store = live()
    form = request.form
    action = form.get("action", "save")
    current = {path: store.read(path) for path in changes}
    if action != "try" and all(_same(current[path][0], text) for path, text in changes.items()):
        flash({"code": "unchanged", "what": what}, "info")
        return redirect(done_url)
    try:
        kb, matcher = draft(changes)
    except Invalid as exc:
        by_field, general = place(exc.problems)
        return render(422, field_errors=by_field, general_errors=general)
    if action == "try":
        question = (form.get("try_question") or "").strip()
        audience = form.get("try_audience")
        return render(200, trial=run_trial(kb, matcher, question, audience) if question else None, draft_trial=True,
                      try_audience=audience)
    if action != "confirm":
        changed = what_would_change(changes)
        if changed:
            return render(200, changed=changed)
    revs = {path: base_rev(rev) for path, (_, rev) in current.items()} if len(changes) == 1 else {path: rev for path, (_, rev) in current.items()}
    try:
        version = store.save(changes, current_user() or "-", revs, (form.get("message") or "").strip())
    except Conflict as exc:
        return render(409, conflict=exc)
    except Invalid as exc:
        by_field, general = place(exc.problems)
        return render(422, field_errors=by_field, general_errors=general)
    if after_save is not None:
        after_save()
    flash({"code": "saved", "what": what, "version": version}, "ok")
    return redirect(done_url)
