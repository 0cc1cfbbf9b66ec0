"""Usage over the last 30 days: messages and outcomes per day (an SVG chart drawn here), top entries, CSV.

The chart is plain SVG computed on the server (polylines on a fixed grid), so
the page needs no script and prints the same on a phone and a desktop.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from typing import Any

from flask import Response, render_template

import bot

from . import bp
from .auth import login_required, record
from .entries import live_entries

DAYS = 30
TOP = 10
# series: (name in the template, stats fields summed)
SERIES: dict[str, tuple[str, ...]] = {
    "answer": ("outcome:answer", "outcome:rule", "outcome:choice"),
    "clarify": ("outcome:clarify",),
    "fallback": ("outcome:fallback",),
    "human": ("outcome:human",),
}
NOT_MESSAGES = ("duplicate", "subscribe", "unsubscribe", "event")  # retries and events a student did not type
WIDTH, HEIGHT, LEFT, RIGHT, TOP_PAD, BOTTOM = 720, 260, 40, 12, 12, 28


@dataclass
class Day:
    date: dt.date
    messages: int
    answer: int
    clarify: int
    fallback: int
    human: int


def days(count: int = DAYS) -> tuple[list[Day], dict[str, int]]:
    """One row per day (oldest first) and the totals of every stats field over those days."""
    rows, totals = [], {}
    for date, stats in bot.current().store.daily_stats(count):
        for name, value in stats.items():
            totals[name] = totals.get(name, 0) + value
        messages = sum(v for k, v in stats.items() if k.startswith("outcome:") and k[8:] not in NOT_MESSAGES)
        parts = {name: sum(stats.get(f, 0) for f in fields) for name, fields in SERIES.items()}
        rows.append(Day(date, messages, **parts))
    return rows, totals


def _nice_max(value: int) -> int:
    """The chart's top: a round number that splits into four whole grid steps."""
    for step in (4, 8, 12, 20, 40, 60, 80, 100, 200, 400, 600, 800, 1000, 2000, 4000, 6000, 8000, 10000, 20000, 40000, 100000):
        if value <= step:
            return step
    return -(-value // 4) * 4


def chart(rows: list[Day]) -> dict[str, Any]:
    """Coordinates for the SVG: one polyline per series, grid lines with labels, date ticks."""
    top = _nice_max(max([r.messages for r in rows] + [1]))
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP_PAD - BOTTOM
    step = inner_w / max(len(rows) - 1, 1)

    def x(i: int) -> float:
        return round(LEFT + i * step, 1)

    def y(v: int) -> float:
        return round(TOP_PAD + inner_h - inner_h * v / top, 1)

    lines = {
        name: " ".join(f"{x(i)},{y(getattr(r, name))}" for i, r in enumerate(rows))
        for name in ("messages", *SERIES)
    }
    grid = [{"y": y(top * k // 4), "label": top * k // 4} for k in range(5)]
    last = len(rows) - 1
    ticks = [
        {"x": x(i), "label": r.date.strftime("%m-%d"), "anchor": "end" if i == last else "middle"}
        for i, r in enumerate(rows) if (i % 5 == 0 and last - i >= 3) or i == last
    ]
    points = [{"x": x(i), "y": y(r.messages), "date": r.date.isoformat(), "messages": r.messages} for i, r in enumerate(rows)]
    return {"width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT, "bottom": TOP_PAD + inner_h, "lines": lines, "grid": grid, "ticks": ticks, "points": points}


def _top(totals: dict[str, int], prefix: str, names: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    found = sorted(((k[len(prefix):], v) for k, v in totals.items() if k.startswith(prefix) and v > 0), key=lambda kv: (-kv[1], kv[0]))
    return [{"id": entry_id, "question": (names.get(entry_id) or {}).get("question", ""), "count": count} for entry_id, count in found[:TOP]]


@bp.get("/usage")
@login_required
def usage() -> Any:
    rows, totals = days()
    entries = live_entries()
    return render_template(
        "admin/usage.html",
        rows=rows,
        chart=chart(rows),
        top_entries=_top(totals, "topic:", entries),
        top_negative=_top(totals, "feedback:", entries),
        total=sum(r.messages for r in rows),
        days=DAYS,
    )


@bp.get("/usage.csv")
@login_required
def usage_csv() -> Response:
    rows, _ = days()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["date", "messages", "answer", "clarify", "fallback", "human"])
    for r in rows:
        writer.writerow([r.date.isoformat(), r.messages, r.answer, r.clarify, r.fallback, r.human])
    record("usage.csv")
    body = "\ufeff" + out.getvalue()  # a BOM so Excel reads the file as UTF-8
    return Response(body, mimetype="text/csv", headers={"Content-Disposition": f"attachment; filename=usage-{dt.date.today():%Y%m%d}.csv"})
