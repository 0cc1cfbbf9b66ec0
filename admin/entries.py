"""Entries: the list with search and the numbers staff act on, the edit form, a new entry.

Saving goes edit → validate → what would change → (confirm) → ``LiveKnowledge.save``
with the revision the form was opened at, so a concurrent save by someone else
is caught and shown as a diff instead of being overwritten.
"""
from __future__ import annotations

import re
from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for

import bot
from knowledge.live import entry_from_yaml, entry_to_yaml
from knowledge.matcher import prepare_training
from knowledge.schema import ENTRY_ID

from . import bp
from .auth import current_user, login_required
from .forms import entry_form, entry_to_form, form_to_entry, place_problems
from .editing import submit
from .service import live, live_pair

STATS_DAYS = 7


def entry_path(entry_id: str) -> str:
    return f"entries/{entry_id}.yaml"


def live_entries() -> dict[str, dict[str, Any]]:
    """Every entry of the live knowledge (disabled ones too), parsed once per knowledge version."""
    store = live()
    version = store.version()
    cached = current_app.extensions.get("xueji_entries")
    if cached and cached[0] == version:
        return cached[1]
    entries: dict[str, dict[str, Any]] = {}
    for path, text in sorted(store.files().items()):
        if path.startswith("entries/") and path.endswith(".yaml") and text is not None:
            try:
                entry = entry_from_yaml(text)
            except Exception:  # a broken overlay file is listed by validation, not here
                continue
            entries[str(entry.get("id") or path[8:-5])] = entry
    current_app.extensions["xueji_entries"] = (version, entries)
    return entries


def audiences() -> dict[str, str]:
    kb, _ = live_pair()
    return {key: audience.label for key, audience in kb.profile.audiences.items()}


def _totals(days: int) -> dict[str, int]:
    totals: dict[str, int] = {}
    for _, counts in bot.current().store.daily_stats(days):
        for name, count in counts.items():
            totals[name] = totals.get(name, 0) + count
    return totals


def _matches(entry: dict[str, Any], query: str) -> bool:
    haystack = [entry.get("id", ""), entry.get("question", ""), entry.get("answer", ""), *(entry.get("similar") or []), *(entry.get("keywords") or [])]
    return any(query in str(text).casefold() for text in haystack)


@bp.get("/entries")
@login_required
def entries() -> Any:
    query = request.args.get("q", "").strip()
    totals = _totals(STATS_DAYS)
    labels = audiences()
    rows = []
    for entry_id, entry in live_entries().items():
        if query and not _matches(entry, query.casefold()):
            continue
        rows.append({
            "id": entry_id,
            "question": entry.get("question", ""),
            "audience": [labels.get(a, a) for a in entry.get("audience") or []],
            "enabled": entry.get("enabled", True),
            "hits": totals.get(f"topic:{entry_id}", 0),
            "negative": totals.get(f"feedback:{entry_id}", 0),
        })
    return render_template("admin/entries.html", rows=rows, query=query, days=STATS_DAYS)


def _render_edit(form: Any, entry_id: str | None, *, status: int = 200, **context: Any) -> tuple[str, int]:
    prepare_training()  # a draft of this form is trained next
    context.setdefault("field_errors", {})
    context.setdefault("general_errors", [])
    return render_template("admin/entry_edit.html", form=form, entry_id=entry_id, audiences=audiences(), **context), status


def _enabled(entry: dict[str, Any]) -> bool:
    return bool(entry.get("enabled", True))


@bp.route("/entries/new", methods=["GET", "POST"])
@login_required
def new_entry() -> Any:
    labels = audiences()
    if request.method == "GET":
        prefill = {"id": "", "question": request.args.get("question", "").strip(), "audience": [next(iter(labels))], "similar": [], "enabled": True}
        form = entry_form(labels, formdata=None, data=entry_to_form(prefill, labels))
        form.base_rev.data = "0"
        return _render_edit(form, None, enabled=True, from_key=request.args.get("from", ""))
    return _edit_post(None, labels)


@bp.route("/entries/<entry_id>", methods=["GET", "POST"])
@login_required
def edit_entry(entry_id: str) -> Any:
    labels = audiences()
    if not re.match(ENTRY_ID, entry_id):
        abort(404)
    text, rev = live().read(entry_path(entry_id))
    if text is None:
        abort(404)
    if request.method == "POST":
        return _edit_post(entry_id, labels)
    entry = entry_from_yaml(text)
    form = entry_form(labels, formdata=None, data=entry_to_form(entry, labels))
    form.base_rev.data = str(rev)
    return _render_edit(form, entry_id, enabled=_enabled(entry))


def _edit_post(entry_id: str | None, labels: dict[str, str]) -> Any:
    store = live()
    formdata = request.form.copy()
    context: dict[str, Any] = {"from_key": formdata.get("from_key", "")}
    if entry_id is None:
        new_id = (formdata.get("id") or "").strip()
        base: dict[str, Any] = {"id": new_id, "similar": [], "keywords": [], "links": [], "variants": [], "enabled": True}
    else:
        formdata.pop("id", None)
        new_id = entry_id
    path = entry_path(new_id) if re.match(ENTRY_ID, new_id) else ""
    existing_text, current_rev = store.read(path) if path else (None, 0)
    if entry_id is not None:
        base = entry_from_yaml(existing_text) if existing_text is not None else {"id": entry_id}
    form = entry_form(labels, formdata=formdata, data=entry_to_form(base, labels))
    entry, field_errors = form_to_entry(form, formdata, base, labels)
    context["enabled"] = _enabled(entry)
    if entry_id is None and not path:
        field_errors["id"] = [{"code": "id_pattern"}]
    elif entry_id is None and existing_text is not None:
        field_errors["id"] = [{"code": "id_taken", "id": new_id}]
    if field_errors:
        return _render_edit(form, entry_id, status=422, field_errors=field_errors, **context)
    if entry == base and entry_id is not None and formdata.get("action") != "try":
        flash({"code": "unchanged", "what": new_id}, "info")
        return redirect(url_for("admin.edit_entry", entry_id=new_id))
    text = entry_to_yaml(entry)

    def render(status: int, **extra: Any) -> Any:
        return _render_edit(form, entry_id, status=status, **context, **extra)

    def after_save() -> None:
        if entry_id is None and context["from_key"]:
            bot.current().store.mark_handled(context["from_key"], current_user() or "-")

    return submit({path: text}, render, lambda problems: place_problems(problems, path, entry), url_for("admin.edit_entry", entry_id=new_id), new_id, after_save)
