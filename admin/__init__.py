"""The staff console under ``/admin``: sign-in, live editing of the knowledge, unanswered questions, usage.

Server-rendered pages (Jinja templates in ``admin/templates``, one stylesheet in
``admin/static``), every form a Flask-WTF form with its CSRF token. The console
keeps nothing of its own: accounts, throttling and the audit trail are
``admin:*`` keys in state.py, the knowledge is ``knowledge.live.LiveKnowledge``.
"""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, Flask, Response, render_template, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect
from redis import RedisError
from werkzeug.middleware.proxy_fix import ProxyFix

bp = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates", static_folder="static")
csrf = CSRFProtect()
MAX_BODY_BYTES = 8 * 1024 * 1024  # a spreadsheet upload; the webhook keeps its own small limit


class _SessionInterface(SecureCookieSessionInterface):
    """The signed session cookie, marked ``Secure`` whenever the request came over HTTPS, and read only
    under ``/admin``: the webhook, ``/metrics`` and ``/healthz`` have no session (no signature checked per message)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure

    def open_session(self, app: Flask, request):  # noqa: ANN001, ANN201 (Flask's signature)
        if not request.path.startswith(app.config["SESSION_COOKIE_PATH"]):
            return None  # Flask then uses a null session, which refuses writes and is never saved
        return super().open_session(app, request)


def init_app(app: Flask) -> None:
    """Register the console on an app: cookie policy, CSRF (console forms only), proxy headers, CLI."""
    app.config["SESSION_COOKIE_NAME"] = "xueji_admin"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_PATH"] = "/admin"
    app.config["PERMANENT_SESSION_LIFETIME"] = dt.timedelta(hours=app.config.get("ADMIN_SESSION_HOURS", 8))
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False  # the webhook is signed by WeChat, not by a form token
    app.config["WTF_CSRF_TIME_LIMIT"] = None  # the token lives as long as the signed-in session
    app.session_interface = _SessionInterface()
    csrf.init_app(app)
    proxies = int(app.config.get("TRUSTED_PROXIES", 0) or 0)
    if proxies > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies)  # type: ignore[method-assign]
    app.register_blueprint(bp)

    from .cli import admin_cli

    app.cli.add_command(admin_cli)


@bp.before_request
def _protect() -> None:
    request.max_content_length = MAX_BODY_BYTES
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        csrf.protect()


@bp.after_request
def _no_store(response: Response) -> Response:
    """Console pages hold staff-only data: never cached, never framed (the stylesheet may be cached)."""
    if request.endpoint != "admin.static":
        response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


@bp.errorhandler(CSRFError)
def _csrf_refused(error: CSRFError) -> tuple[str, int]:
    return render_template("admin/error.html", reason="csrf"), 400


@bp.errorhandler(RedisError)
def _redis_down(error: RedisError) -> tuple[str, int]:
    return render_template("admin/error.html", reason="redis"), 503


from . import auth, entries, files, history, sheet, trial, unanswered, usage  # noqa: E402,F401  (registers the views)
