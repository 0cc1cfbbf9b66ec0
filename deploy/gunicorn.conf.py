"""gunicorn settings for production: ``gunicorn -c deploy/gunicorn.conf.py``.

Runs the same ``create_app`` factory as ``python app.py``. Every worker shares
one Redis (``REDIS_URL``); without one, the master starts the embedded server
once and hands its socket to the workers, so a single host still works.
A missing WECHAT_TOKEN stops the start with a clear message.
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
chdir = str(ROOT)

import config as settings  # noqa: E402
from embedded_redis import EmbeddedRedis  # noqa: E402

wsgi_app = "app:create_app()"
bind = os.environ.get("GUNICORN_BIND", f"127.0.0.1:{os.environ.get('PORT', '5000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
# Threads let a retried delivery wait for the first one without holding a whole worker.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# WeChat gives up after 5 s; a request still running after 10 s is a bug, not load.
timeout = 10
graceful_timeout = 10
accesslog = "-"
errorlog = "-"
loglevel = "info"


def on_starting(server):
    try:
        config = settings.load()
        settings.require_token(config)
    except settings.ConfigError as exc:
        sys.exit(f"xueji-bot cannot start: {exc}")
    if not config["REDIS_URL"]:
        embedded = EmbeddedRedis(Path(config["INSTANCE_PATH"])).start()
        os.environ["REDIS_URL"] = embedded.url
        server._xueji_embedded = embedded
        server.log.info("no REDIS_URL: embedded Redis on %s", embedded.url)


def on_exit(server):
    embedded = getattr(server, "_xueji_embedded", None)
    if embedded is not None:
        embedded.stop()
