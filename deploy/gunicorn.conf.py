"""gunicorn settings for production: ``gunicorn -c deploy/gunicorn.conf.py``.

Runs the same ``create_app`` factory as ``python app.py``. Every worker shares
one Redis (``REDIS_URL``); without one, the master starts the embedded server
once and hands its socket to the workers, so a single host still works.
A missing WECHAT_TOKEN stops the start with a clear message.

Worker model (measured with ``bench/load.py`` on the same 2-core machine, wrk, Redis and
other work sharing the cores; figures in the README):

* ``gthread`` (2 workers × 4 threads, no keep-alive, as many connections per worker as
  threads), shipped until 2026-12-01: every request passes between a worker's accepting
  thread and its pool, and its two Redis round trips and log write each hand the GIL to
  another thread. Without the access log and with one thread per worker (3 or 4 workers)
  a message still cost 0.92–0.95 ms of worker CPU against 0.80–0.81 ms under ``sync``
  (0.46× the floor's throughput against 0.50–0.51×, alternating runs, 16 connections).
* ``sync``, one process per request at a time: no thread hand-offs and no GIL to share;
  with keep-alive off every request is accepted by whichever process is free, so both
  cores work. ``cores + 1`` processes keep the cores busy while one waits on Redis: 3 did
  1,845–1,948 req/s at p99 10.8–13.2 ms, 4 did no better and started slower (2.2–2.5 s to
  a first answer against 1.9–2.0 s on a slow day: every process loads at once).
* What sync costs: a process serves one request at a time. nginx buffers each request and
  reply in front (``deploy/nginx-site.conf``), so a slow client never holds one; a WeChat
  retry that waits for its first delivery (``RETRY_WAIT``) holds one for up to 4 s, which
  only happens when that first delivery is itself stuck.
* No access log by default: nginx writes one line per request already (without query
  strings), and gunicorn's copy cost 8% of a worker's time. ``GUNICORN_ACCESSLOG=-`` turns
  it on (to stdout, still without query strings).

``WEB_CONCURRENCY``, ``GUNICORN_WORKER_CLASS``, ``GUNICORN_THREADS``, ``GUNICORN_KEEPALIVE``
and ``GUNICORN_WORKER_CONNECTIONS`` override. The app is not preloaded, so ``kill -HUP
<master>`` (``systemctl reload``) replaces the workers one by one with freshly loaded code
and knowledge while the old ones finish their requests.
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
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
workers = int(os.environ.get("WEB_CONCURRENCY", str((os.cpu_count() or 1) + 1)))
threads = int(os.environ.get("GUNICORN_THREADS", "1" if worker_class == "sync" else "4"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "0"))
# With keep-alive, gunicorn keeps ``worker_connections - threads`` idle connections: its default of 1,000 then.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", str(threads if keepalive == 0 else 1000)))
backlog = 512
# A sync worker silent this long is killed. WeChat gives up after 5 s and the app ends every
# webhook path before that (a retry waits RETRY_WAIT = 4 s at most, Redis calls time out), so
# this only has to outlast the slowest staff request: a save trains the matcher in the request
# (1.6 s here for one added similar question, 4.4 s with nothing cached, more on a busy machine).
timeout = 20
graceful_timeout = 10
# A worker that grew (or leaked) is replaced now and then, staggered so they never all restart at once.
max_requests = 50000
max_requests_jitter = 5000
# gunicorn 27's control socket sits at one path per user: several bots (or a bot and a benchmark) on one
# host would fight over it, and systemd's `reload` is the operator's interface anyway.
control_socket_disable = True
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
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
