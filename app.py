"""xueji-bot: the application factory, and ``python app.py`` for a one-machine bot.

``create_app`` follows the Flask tutorial (flaskr): configuration from the
environment with overrides from the caller, blueprints for each area, click
commands under ``flask``. Production runs the same factory under gunicorn
(``deploy/gunicorn.conf.py``).
"""
from __future__ import annotations

import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any, Mapping

if __name__ == "__main__":
    # `python app.py` from any interpreter runs in the project's .venv (made by scripts/run.sh).
    _VENV_PYTHON = Path(__file__).resolve().parent / ".venv" / "bin" / "python"
    if _VENV_PYTHON.exists() and Path(sys.prefix).resolve() != _VENV_PYTHON.parent.parent.resolve():
        os.execv(str(_VENV_PYTHON), [str(_VENV_PYTHON), *sys.argv])

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

import bot
import config as settings
import logs
import metrics
from knowledge.base import KnowledgeError


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app; ``config`` overrides the environment (tests pass one)."""
    app = Flask(__name__, instance_relative_config=False)
    app.config.update(settings.load(config))
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_BODY_BYTES"]
    logs.configure(app.config["LOG_LEVEL"])
    metrics.init(app.config)
    # Under the flask CLI (`flask kb …`) nothing is built until a command needs it, so
    # `flask kb validate` can report a broken knowledge base instead of failing to start.
    app.extensions["xueji"] = None if os.environ.get("FLASK_RUN_FROM_CLI") == "true" else bot.build(app.config)

    from chat import chat
    import admin
    from cli import kb_cli
    from menu_cli import menu_cli
    from webhook import bp as webhook_bp

    app.register_blueprint(webhook_bp)
    app.register_blueprint(metrics.bp)
    app.cli.add_command(kb_cli)
    app.cli.add_command(menu_cli)
    app.cli.add_command(chat)
    admin.init_app(app)

    @app.get("/healthz")
    def healthz() -> Response:
        redis_up = bot.current().store.ping()
        return jsonify(status="ok", redis="up" if redis_up else "down", mode="stateful" if redis_up else "stateless")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        return Response(f"{error.code} {error.name}", status=error.code, mimetype="text/plain")

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        app.logger.exception("unhandled error")
        return Response("internal error", status=500, mimetype="text/plain")

    return app


def main() -> None:
    """Run the whole bot on this machine: embedded Redis, a development token if none is set."""
    logs.configure(os.environ.get("LOG_LEVEL", "INFO"))
    # A plain `kill` (systemd, CI, tests) must still run the atexit clean-up that stops the embedded Redis.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    overrides: dict[str, str] = {}
    try:
        config = settings.load()
        if not config["WECHAT_TOKEN"]:
            overrides["WECHAT_TOKEN"] = "dev-" + secrets.token_hex(8)
            print(f"WECHAT_TOKEN is not set; using the development token {overrides['WECHAT_TOKEN']}", flush=True)
        app = create_app(overrides)
    except (settings.ConfigError, KnowledgeError) as exc:
        raise SystemExit(f"cannot start: {exc}") from None
    print(f"xueji-bot listening on http://127.0.0.1:{config['PORT']}/wechat", flush=True)
    app.run(host="127.0.0.1", port=config["PORT"], threaded=True)


if __name__ == "__main__":
    main()
