"""The spreadsheet round trip: the whole knowledge base as one .xlsx, and an import with a preview.

An upload is read, checked and shown as the list of files it would change
(with diffs and the decisions that would change); it is kept in Redis under a
random token until the staff member confirms, then saved in one go, or not at all.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for

from knowledge.live import Conflict, Invalid, unified_diff
from knowledge.matcher import prepare_training
from knowledge.spreadsheet import export_xlsx, import_xlsx

from . import bp
from .auth import current_user, login_required, record, store
from .forms import ActionForm, UploadForm
from .service import live, what_would_change

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@bp.get("/spreadsheet")
@login_required
def spreadsheet() -> Any:
    prepare_training()  # an upload's draft is trained next
    return render_template("admin/spreadsheet.html", form=UploadForm())


@bp.get("/spreadsheet/export.xlsx")
@login_required
def export() -> Response:
    data = export_xlsx(live().files())
    record("spreadsheet.export")
    name = f"knowledge-{dt.date.today():%Y%m%d}.xlsx"
    return Response(data, mimetype=XLSX, headers={"Content-Disposition": f"attachment; filename={name}"})


def _preview(data: bytes) -> tuple[dict[str, str | None], dict[str, int], list[Any]]:
    """The changes an upload makes, the revisions they are based on, and why they would be refused."""
    knowledge = live()
    _, files, revs = knowledge.snapshot()
    try:
        changes = import_xlsx(data, files)
    except Invalid as exc:
        return {}, {}, [str(p) for p in exc.problems]
    except Exception as exc:  # not a spreadsheet at all: openpyxl raises several kinds
        return {}, {}, [f"{type(exc).__name__}: {exc}"]
    problems = [str(p) for p in knowledge.validate(changes)] if changes else []
    return changes, {path: revs.get(path, 0) for path in changes}, problems


@bp.post("/spreadsheet/import")
@login_required
def import_preview() -> Any:
    form = UploadForm()
    if not form.validate():
        return render_template("admin/spreadsheet.html", form=form, problems=[{"code": "no_file"}]), 422
    data = form.file.data.read()
    changes, revs, problems = _preview(data)
    if problems:
        return render_template("admin/spreadsheet.html", form=form, problems=problems), 422
    files = live().files()
    diffs = [{"path": path, "deleted": text is None, "diff": unified_diff(files.get(path), text, path, "live", "xlsx")} for path, text in sorted(changes.items())]
    changed = what_would_change(changes) if changes else []
    token = secrets.token_urlsafe(16)
    envelope = {"user": current_user(), "data": base64.b64encode(data).decode(), "revs": revs}
    store().admin_put_upload(token, json.dumps(envelope).encode())
    record("spreadsheet.preview", f"{len(changes)} file(s)")
    return render_template("admin/spreadsheet.html", form=form, confirm=ActionForm(), token=token, diffs=diffs, changed=changed)


@bp.post("/spreadsheet/confirm")
@login_required
def import_confirm() -> Any:
    ActionForm()
    token = request.form.get("token", "")
    raw = store().admin_upload(token) if token else None
    if raw is None:
        abort(404)
    envelope = json.loads(raw)
    if envelope.get("user") != current_user():
        abort(404)
    changes, _, problems = _preview(base64.b64decode(envelope["data"]))
    if problems:
        return render_template("admin/spreadsheet.html", form=UploadForm(formdata=None), problems=problems), 422
    try:
        version = live().save(changes, current_user() or "-", envelope["revs"], "spreadsheet import") if changes else live().version()
    except Conflict as exc:
        return render_template("admin/spreadsheet.html", form=UploadForm(formdata=None), conflict=exc), 409
    except Invalid as exc:
        return render_template("admin/spreadsheet.html", form=UploadForm(formdata=None), problems=[str(p) for p in exc.problems]), 422
    store().admin_drop_upload(token)
    flash({"code": "imported", "count": len(changes), "version": version}, "ok")
    return redirect(url_for("admin.spreadsheet"))
