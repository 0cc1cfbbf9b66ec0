"""Unanswered questions: what students asked that the bot could not answer, and one click to teach it.

Each group (same question once normalised) can become a similar question of an
entry (the matcher's top candidates are suggested), an out-of-domain example,
or a new entry; marking it handled hides it until someone asks it again.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from flask import flash, redirect, render_template, request, url_for

from knowledge.live import Conflict, Invalid, entry_from_yaml, entry_to_yaml

from . import bp
from .auth import current_user, login_required, record, store
from .entries import entry_path, live_entries
from .files import OUT_OF_DOMAIN, ood_examples, ood_text
from .forms import ActionForm, UnansweredForm
from .service import live, live_pair

SUGGESTED = 3
SHOWN = 200


@bp.get("/unanswered")
@login_required
def unanswered() -> Any:
    show_handled = request.args.get("handled") == "1"
    groups = store().unanswered_groups(limit=SHOWN, include_handled=show_handled)
    _, matcher = live_pair()
    entries = live_entries()
    choices = sorted((entry_id, entry.get("question", "")) for entry_id, entry in entries.items())
    rows = []
    for group in groups:
        suggested = [(entry_id, score) for entry_id, score in matcher.rank(group["text"])[:SUGGESTED] if entry_id in entries]
        rows.append({
            **group,
            "last_seen_at": _when(group.get("last_seen")),
            "suggested": [{"id": entry_id, "question": entries[entry_id].get("question", ""), "score": round(score, 3)} for entry_id, score in suggested],
        })
    return render_template("admin/unanswered.html", rows=rows, choices=choices, form=ActionForm(), show_handled=show_handled)


def _when(value: Any) -> str:
    """Last seen, in the server's local time, to the minute."""
    if isinstance(value, (int, float)):
        value = dt.datetime.fromtimestamp(value, dt.timezone.utc)
    if not isinstance(value, dt.datetime):
        return str(value or "")
    return value.astimezone().strftime("%Y-%m-%d %H:%M")


def _refuse(exc: Exception) -> Any:
    problems = [str(p) for p in getattr(exc, "problems", [])] or [str(exc)]
    return render_template("admin/error.html", reason="unanswered", problems=problems), 422


@bp.post("/unanswered/similar")
@login_required
def add_similar() -> Any:
    form = UnansweredForm()
    text = (form.text.data or "").strip()
    entry_id = (form.entry.data or "").strip()
    path = entry_path(entry_id)
    current, rev = live().read(path) if entry_id else (None, 0)
    if not text or current is None:
        return _refuse(ValueError(f"unknown entry {entry_id!r} or empty question"))
    entry = entry_from_yaml(current)
    if text not in entry["similar"]:
        entry["similar"] = [*entry["similar"], text]
        entry["updated"] = dt.date.today().isoformat()
    try:
        version = live().save({path: entry_to_yaml(entry)}, current_user() or "-", {path: rev}, f"unanswered → similar: {text}")
    except (Invalid, Conflict) as exc:
        return _refuse(exc)
    if form.key.data:
        store().mark_handled(form.key.data, current_user() or "-")
    flash({"code": "similar_added", "text": text, "what": entry_id, "version": version}, "ok")
    return redirect(url_for("admin.unanswered"))


@bp.post("/unanswered/out-of-domain")
@login_required
def add_out_of_domain() -> Any:
    form = UnansweredForm()
    text = (form.text.data or "").strip()
    if not text:
        return _refuse(ValueError("empty question"))
    examples, previous, rev = ood_examples()
    if text not in examples:
        examples.append(text)
    try:
        version = live().save({OUT_OF_DOMAIN: ood_text(examples, previous)}, current_user() or "-", {OUT_OF_DOMAIN: rev}, f"unanswered → out of domain: {text}")
    except (Invalid, Conflict) as exc:
        return _refuse(exc)
    if form.key.data:
        store().mark_handled(form.key.data, current_user() or "-")
    flash({"code": "ood_added", "text": text, "version": version}, "ok")
    return redirect(url_for("admin.unanswered"))


@bp.post("/unanswered/handled")
@login_required
def mark_handled() -> Any:
    form = UnansweredForm()
    key = form.key.data or ""
    if key and store().mark_handled(key, current_user() or "-"):
        record("unanswered.handled", form.text.data or key)
        flash({"code": "handled", "text": form.text.data or key}, "ok")
    return redirect(url_for("admin.unanswered"))
