"""Prometheus metrics (``/metrics``): messages by type and outcome, reply latency, Redis errors, degraded mode.

Under gunicorn every worker is its own process, so the counters live in
prometheus_client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, set up and
cleaned by ``deploy/gunicorn.conf.py``) and ``/metrics`` adds them up over all
workers, whichever worker answers the scrape. Without that directory (``python
app.py``, one process) the ordinary in-process registry is used.

The directory must be in the environment before prometheus_client is imported,
so this module imports it only in ``init``.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from flask import Blueprint, Response

bp = Blueprint("metrics", __name__)

# Label values come from outside (MsgType, Event): only these are kept, the rest is "other".
KNOWN_TYPES = frozenset({
    "text", "image", "voice", "video", "shortvideo", "location", "link", "file",
    "event:subscribe", "event:subscribe_scan", "event:unsubscribe", "event:click", "event:view", "event:scan",
    "event:location", "event:templatesendjobfinish", "event:masssendjobfinish", "event:view_miniprogram",
})

_metrics: dict[str, Any] = {}


def init(config: Mapping[str, Any]) -> None:
    """Create the metrics once per process (multiprocess mode when a directory is configured)."""
    if _metrics:
        return
    directory = config.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if directory:
        os.makedirs(directory, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    import prometheus_client as prom

    _metrics.update(
        prom=prom,
        multiprocess=bool(directory),
        messages=prom.Counter("xueji_messages_total", "Messages answered, by WeChat type and outcome", ["type", "outcome"]),
        refused=prom.Counter("xueji_refused_total", "Requests refused before any answer, by HTTP status", ["status"]),
        latency=prom.Histogram(
            "xueji_reply_seconds", "Time from request to reply, inside the app",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        ),
        redis_errors=prom.Counter("xueji_redis_errors_total", "Redis calls that failed or timed out"),
        degraded=prom.Gauge("xueji_degraded", "1 while a worker answers statelessly (Redis unavailable)",
                            multiprocess_mode="livemax"),
    )


def message(kind: str, outcome: str, seconds: float, degraded: bool) -> None:
    """Count one answered (or deduplicated) message."""
    if not _metrics:
        return
    _metrics["messages"].labels(kind if kind in KNOWN_TYPES else "other", outcome).inc()
    _metrics["latency"].observe(seconds)
    _metrics["degraded"].set(1 if degraded else 0)


def refused(status: int) -> None:
    if _metrics:
        _metrics["refused"].labels(str(status)).inc()


def redis_error(_what: str) -> None:
    if _metrics:
        _metrics["redis_errors"].inc()


@bp.get("/metrics")
def scrape() -> Response:
    """The Prometheus text format, summed over every worker in multiprocess mode."""
    prom = _metrics["prom"]
    if _metrics["multiprocess"]:
        from prometheus_client import multiprocess

        registry = prom.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = prom.REGISTRY
    return Response(prom.generate_latest(registry), mimetype=prom.CONTENT_TYPE_LATEST)
