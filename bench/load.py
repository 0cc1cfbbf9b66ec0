"""placeholder"""
from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def dev_questions() -> list[str]:
    """The dev set's questions (in-domain and out-of-domain), the load's message mix."""
    data = yaml.safe_load((ROOT.parent / "shared" / "eval" / "dev-questions.yaml").read_text(encoding="utf-8"))
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("q"), str):
                found.append(node["q"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and node not in found:
            pass

    walk(data)
    return found
