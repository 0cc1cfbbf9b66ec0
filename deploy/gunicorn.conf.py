"""gunicorn settings for production: ``gunicorn -c deploy/gunicorn.conf.py``.

Runs the same ``create_app`` factory as ``python app.py``. Every worker shares
one Redis (``REDIS_URL``); without one, the master starts the embedded server
once and hands its socket to the workers, so a single host still works.
A missing WECHAT_TOKEN stops the start with a clear message.

Worker model (measured with ``bench/load.py`` and a four-way A/B on the same
2-core machine, wrk, Redis and other work sharing the cores; figures in the README):

* ``sync`` workers (3 or 5): every request is a new connection and a process
  wake-up; on a busy machine the bot managed 83–130 req/s, a third of gthread.
* ``gthread`` with keep-alive: fast (250–290 req/s), but the 16 keep-alive
  connections are accepted by whichever worker wakes first and stay there, so
  on a quiet machine one worker does all the work while the other idles (the
  same happens behind nginx's upstream keepalive).
* ``gthread`` without keep-alive (``keepalive = 0``): as fast (210–290 req/s)
  and each request is accepted by a worker that is free at that moment, so
  both cores work. The price is a TCP handshake per request on the loopback (or
  LAN) hop from nginx, far less than an idle core.
* ``reuse_port`` does not help: the master binds once and the workers share
  that socket, so the kernel has no per-worker sockets to balance.
* Balanced accept: a gthread worker's main thread accepts whenever it runs,
  however busy its threads are, so one worker queued requests behind its four
  busy threads while the other had idle ones. ``worker_connections = threads``
  stops a worker accepting while all its threads are taken, and the kernel's
  listen queue hands the next connection to a worker with a free thread. Four
  alternating runs each (2026-12-01 evening, bot p99 at 16 connections):
  36.6–48.5 ms against 54.0–63.9 ms with gunicorn's default of 1,000, p99/p50
  1.7–1.9 against 2.3–2.6, throughput the same within the noise (0.45–0.54×
  the floor against 0.43–0.49×); 6 or 8 per worker fell in between.

So: ``gthread``, one worker per core, 4 threads each (a retry waiting for the
first delivery holds a thread, not a worker), no keep-alive, as many
connections per worker as threads. ``WEB_CONCURRENCY``, ``GUNICORN_WORKER_CLASS``,
``GUNICORN_THREADS``, ``GUNICORN_KEEPALIVE`` and ``GUNICORN_WORKER_CONNECTIONS``
override. The app is not preloaded, so ``kill -HUP <master>`` (``systemctl
reload``) replaces the workers one by one with freshly loaded code and
knowledge while the old ones finish their requests.
"""
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
chdir = str(ROOT)

import config as settings  # noqa: E402
from embedded_redis import EmbeddedRedis  # noqa: E402

wsgi_app = "app:create_app()"
bind = os.environ.get("GUNICORN_BIND", f"127.0.0.1:{os.environ.get('PORT', '5000')}")
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
workers = int(os.environ.get("WEB_CONCURRENCY", str(max(2, os.cpu_count() or 1))))
threads = int(os.environ.get("GUNICORN_THREADS", "1" if worker_class == "sync" else "4"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "0"))
# With keep-alive, gunicorn keeps ``worker_connections - threads`` idle connections: its default of 1,000 then.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", str(threads if keepalive == 0 else 1000)))
backlog = 512
# WeChat gives up after 5 s and the slowest legitimate path (a retry waiting RETRY_WAIT = 4 s for the
# first delivery) ends before that: a worker silent for 6 s is stuck, not busy.
timeout = 6
graceful_timeout = 10
# A worker that grew (or leaked) is replaced now and then, staggered so they never all restart at once.
max_requests = 50000
max_requests_jitter = 5000
# gunicorn 27's control socket sits at one path per user: several bots (or a bot and a benchmark) on one
# host would fight over it, and systemd's `reload` is the operator's interface anyway.
control_socket_disable = True
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-")
errorlog = "-"
loglevel = "info"
# No query string in the access log: it holds the openid (WeChat adds ``openid=``) and the signatures.
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms'


def on_starting(server):
    try:
        config = settings.load()
        settings.require_token(config)
    except settings.ConfigError as exc:
        sys.exit(f"xueji-bot cannot start: {exc}")
    # Metrics: every worker writes its counters to files here and /metrics adds them up (metrics.py).
    # The workers inherit the variable; a reload (HUP) keeps the directory.
    directory = config["PROMETHEUS_MULTIPROC_DIR"]
    if not directory:
        directory = tempfile.mkdtemp(prefix="xueji-metrics-")
        server._xueji_metrics_tmp = directory
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    os.makedirs(directory, exist_ok=True)
    # Counters from an earlier run would be added to this run's: start from an empty directory.
    for stale in Path(directory).glob("*.db"):
        stale.unlink()
    if not config["REDIS_URL"]:
        embedded = EmbeddedRedis(Path(config["INSTANCE_PATH"])).start()
        os.environ["REDIS_URL"] = embedded.url
        server._xueji_embedded = embedded
        server.log.info("no REDIS_URL: embedded Redis on %s", embedded.url)


def child_exit(server, worker):
    """A worker's live gauges must not outlive it (its counters stay, summed into the totals)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    embedded = getattr(server, "_xueji_embedded", None)
    if embedded is not None:
        embedded.stop()
    temporary = getattr(server, "_xueji_metrics_tmp", None)
    if temporary:
        shutil.rmtree(temporary, ignore_errors=True)
