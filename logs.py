"""Logging: one JSON object per line, the same under ``python app.py``, gunicorn and the CLI.

The webhook logs a dict per message (hashed openid, type, outcome, topic,
latency — never the message text at INFO); other loggers' messages become the
``message`` field. Configured by ``create_app`` unless the host process set up
logging itself.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import sys


class JsonFormatter(logging.Formatter):
    """A record as one JSON line; a dict message is merged into it."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if isinstance(record.msg, dict):
            line.update(record.msg)
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: str = "INFO") -> None:
    """JSON lines on stderr for the root logger, unless the process already configured logging (pytest does)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
