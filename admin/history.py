"""History of a knowledge file (who, when, diff), restoring an earlier revision, and the audit trail."""
from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for

from knowledge.live import Conflict, Invalid, unified_diff

from . import bp
from .auth import current_user, login_required, store
from .forms import ActionForm
from .service import live


def _known(path: str) -> bool:
    return live().read(path)[0] is not None or bool(live().history(path))


@bp.get("/history/<path:path>")
@login_required
def history(path: str) -> Any:
    if not _known(path):
        abort(404)
    items = live().history(path)
    text, rev = live().read(path)
    return render_template("admin/history.html", path=path, items=items, current_rev=rev, form=ActionForm(), entry_id=_entry_id(path))


@bp.get("/history/<path:path>/<int:rev>")
@login_required
def revision(path: str, rev: int) -> Any:
    try:
        old = live().text_at(path, rev)
    except KeyError:
        abort(404)
    text, current_rev = live().read(path)
    diff = unified_diff(text, old, path, f"rev {current_rev}", f"rev {rev}")
    return render_template("admin/revision.html", path=path, rev=rev, text=old, diff=diff, current_rev=current_rev, form=ActionForm(), entry_id=_entry_id(path))


@bp.post("/history/<path:path>/<int:rev>/restore")
@login_required
def restore(path: str, rev: int) -> Any:
    try:
        version = live().restore(path, rev, current_user() or "-")
    except KeyError:
        abort(404)
    except (Invalid, Conflict) as exc:
        problems = [str(p) for p in getattr(exc, "problems", [])] or [str(exc)]
        return render_template("admin/error.html", reason="restore", problems=problems, path=path), 422
    flash({"code": "restored", "what": path, "rev": rev, "version": version}, "ok")
    entry_id = _entry_id(path)
    if entry_id and live().read(path)[0] is not None:
        return redirect(url_for("admin.edit_entry", entry_id=entry_id))
    return redirect(url_for("admin.history", path=path))


def _entry_id(path: str) -> str | None:
    if path.startswith("entries/") and path.endswith(".yaml") and "/" not in path[8:]:
        return path[8:-5]
    return None


@bp.get("/audit")
@login_required
def audit() -> Any:
    limit = min(max(request.args.get("limit", 200, type=int) or 200, 1), 2000)
    return render_template("admin/audit.html", items=store().admin_audit(limit))
