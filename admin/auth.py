"""Staff accounts and sign-in: hashed passwords, throttled failures, a signed session, an audit trail.

Failed sign-ins are counted per account and per client address in Redis
(``admin:fail:*``), so every app process sees the same counts. The first few
failures cost nothing; after that each attempt must wait (30 s, then twice as
long after each further failure, at most 15 min), which stops guessing without
locking a staff member out for long. An attempt refused for waiting is not
checked, so hammering the form gains nothing.
"""
from __future__ import annotations

import datetime as dt
import functools
import time
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

from flask import g, redirect, render_template, request, session, url_for
from flask_wtf import FlaskForm
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

import bot
import state

from . import bp

F = TypeVar("F", bound=Callable[..., Any])
FREE_USER_FAILURES = 5  # per account, within state.ADMIN_FAIL_WINDOW
FREE_ADDRESS_FAILURES = 20  # per address (a shared office NAT is several staff)
FIRST_WAIT = 30.0
MAX_WAIT = 900.0
USERNAME_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"


class LoginForm(FlaskForm):
    username = StringField(validators=[DataRequired(), Length(max=64)])
    password = PasswordField(validators=[DataRequired(), Length(max=256)])


def store() -> state.Store:
    return bot.current().store


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """What an unknown name is checked against; made on first use, not at import (0.1 s of every worker's start)."""
    return generate_password_hash("not a password")


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def create_user(name: str, password: str) -> None:
    store().admin_save_user(name, hash_password(password), dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))


def wait_needed(failures: int, last: float, free: int, now: float) -> float:
    """Seconds still to wait before the next attempt: none for the first ``free`` failures, then 30 s, 60 s, 120 s …"""
    if failures < free:
        return 0.0
    wait = min(MAX_WAIT, FIRST_WAIT * 2.0 ** (failures - free))
    return max(0.0, last + wait - now)


def throttle(username: str, address: str, now: float) -> float:
    """How long this account or address must still wait before it may try again."""
    s = store()
    per_user = wait_needed(*s.admin_failures("user", username), FREE_USER_FAILURES, now)
    per_address = wait_needed(*s.admin_failures("ip", address), FREE_ADDRESS_FAILURES, now)
    return max(per_user, per_address)


def verify(username: str, password: str) -> bool:
    """Check a password against the stored hash (hashing even for an unknown name, so timing says nothing)."""
    user = store().admin_user(username)
    ok = check_password_hash(user["hash"] if user else _dummy_hash(), password)
    return bool(user) and ok


def current_user() -> str | None:
    return g.get("admin_user")


def record(action: str, detail: str = "") -> None:
    """Add one line to the audit trail, as the signed-in staff member."""
    store().admin_record(current_user() or "-", action, detail)


def login_required(view: F) -> F:
    """Every console page but the sign-in page: a signed-in staff member whose account still exists."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        name = session.get("admin")
        user = store().admin_user(name) if name else None
        if not user or user.get("created") != session.get("admin_created"):
            session.pop("admin", None)
            return redirect(url_for("admin.login", next=request.full_path.rstrip("?") if request.method == "GET" else None))
        g.admin_user = name
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def _safe_next(target: str | None) -> str:
    """Only a path inside the console, never another site."""
    if target and target.startswith("/admin") and not urlsplit(target).netloc and "\\" not in target:
        return target
    return url_for("admin.entries")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    form = LoginForm()
    error = None
    status = 200
    if form.validate_on_submit():
        username = form.username.data.strip()
        address = request.remote_addr or "-"
        now = time.time()
        wait = throttle(username, address, now)
        if wait > 0:
            error, status = ("throttled", 429)
            store().admin_record(username, "login_throttled", address)
        elif verify(username, form.password.data):
            store().admin_clear_failures(username)
            session.clear()
            session.permanent = True
            session["admin"] = username
            session["admin_created"] = store().admin_user(username)["created"]
            store().admin_record(username, "login", address)
            return redirect(_safe_next(request.args.get("next")))
        else:
            store().admin_note_failure(username, address, now)
            store().admin_record(username, "login_failed", address)
            error, status = ("wrong", 401)
        return render_template("admin/login.html", form=form, error=error, wait=int(wait + 0.999)), status
    elif request.method == "POST":
        status = 400
    return render_template("admin/login.html", form=form, error=error, wait=0), status


@bp.post("/logout")
@login_required
def logout() -> Any:
    record("logout")
    session.clear()
    return redirect(url_for("admin.login"))


@bp.get("/")
@login_required
def home() -> Any:
    return redirect(url_for("admin.entries"))
