"""Labelled question sets: the training examples beyond the entries, and what the benchmark scores.

A set file (``bench/*-questions.yaml``) has ``in_domain`` items (``q`` and the
``expect``-ed entry ids), ``out_of_domain`` items (``q``) and ``smalltalk``
items (``q`` and ``kind``); a file may split them into top-level sections
(``tune:``, ``holdout:``), each read as a set of its own. Other keys of an item
(``voice``) are kept for reporting and otherwise ignored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .text import SAFE_LOADER

ROOT = Path(__file__).resolve().parent.parent
# The labelled sets shipped with the code that the matcher learns from besides the entries.
TRAINING_SETS = tuple(
    ROOT / "bench" / name
    for name in (
        "dev-questions.yaml",
        "fresh-questions.yaml",
        "unseen-questions.yaml",
        *(f"blind-{round_}{part}.yaml" for round_, parts in (("1", "abc"), ("2", "de"), ("3", "fgh"), ("4", "jk"), ("5", "m"), ("6", "n"), ("7", "pq"), ("8", "rs"), ("9", "tu"), ("10", "v"), ("11", "wx"), ("12", "y")) for part in parts),
    )
)
_KINDS = ("in_domain", "out_of_domain", "smalltalk")


@dataclass(frozen=True)
class Item:
    q: str
    expect: tuple[str, ...] = ()  # entry ids; empty for out-of-domain
    kind: str = ""  # small-talk kind
    voice: str = ""


@dataclass
class QuestionSet:
    name: str
    in_domain: list[Item] = field(default_factory=list)
    out_of_domain: list[Item] = field(default_factory=list)
    smalltalk: list[Item] = field(default_factory=list)


def _items(raw: object, kind: str) -> list[Item]:
    items = []
    for item in raw or []:
        if not isinstance(item, dict) or not str(item.get("q", "")).strip():
            continue
        expect = item.get("expect") or []
        items.append(
            Item(
                q=str(item["q"]),
                expect=tuple(str(e) for e in (expect if isinstance(expect, list) else [expect])),
                kind=str(item.get("kind", "")),
                voice=str(item.get("voice", "")),
            )
        )
    return items if kind != "in_domain" else [i for i in items if i.expect]


def read_sets(path: Path) -> list[QuestionSet]:
    """The sets of one file: the file itself, or one per top-level section that holds in_domain etc."""
    raw = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER) or {}
    if not isinstance(raw, dict):
        return []
    if any(kind in raw for kind in _KINDS):
        sections = {path.stem: raw}
    else:
        sections = {f"{path.stem}:{key}": value for key, value in raw.items() if isinstance(value, dict)}
    return [QuestionSet(name, *(_items(body.get(kind), kind) for kind in _KINDS)) for name, body in sections.items()]


def training_sets() -> list[QuestionSet]:
    """The labelled sets shipped in the repository (none if the files are missing)."""
    return [s for path in TRAINING_SETS if path.exists() for s in read_sets(path)]
