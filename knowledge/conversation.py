"""How a student continues a conversation: the words of ``conversation.yaml`` and how messages are read against them.

A number picked from a list arrives in many shapes (「2」「２」「②」「二」「第二个」
「选2」「2.」); a statement of who the student is (「我是研究生」「我在国开读书」)
may stand alone or open a question. The words are data; this module only reads.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable

from .text import compact


@dataclass(frozen=True)
class Group:
    key: str
    title: str
    entries: tuple[str, ...]


def _words(raw: Any) -> frozenset[str]:
    return frozenset(compact(str(w)) for w in raw or []) - {""}


def _ordered(raw: Any) -> tuple[str, ...]:
    """Longest first, so 「我选」 is taken off before 「选」."""
    return tuple(sorted(_words(raw), key=len, reverse=True))


@dataclass(frozen=True)
class Conversation:
    more: frozenset[str] = frozenset()
    feedback: frozenset[str] = frozenset()
    end_human: frozenset[str] = frozenset()
    reset_audience: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()
    openings: tuple[str, ...] = ()
    tails: frozenset[str] = frozenset()
    welcome_topics: tuple[str, ...] = ()
    groups: dict[str, Group] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, raw: Any) -> tuple["Conversation", list[str]]:
        """The conversation words, and the problems found in them (each a sentence for ``kb validate``)."""
        problems: list[str] = []
        if not isinstance(raw, dict):
            return cls(), ["must be a mapping"]
        choice = raw.get("choice") or {}
        groups: dict[str, Group] = {}
        for item in raw.get("groups") or []:
            if not isinstance(item, dict) or not item.get("key") or not item.get("title") or not item.get("entries"):
                problems.append(f"group {item!r} needs a key, a title and entries")
                continue
            groups[str(item["key"])] = Group(str(item["key"]), str(item["title"]), tuple(str(e) for e in item["entries"]))
        conversation = cls(
            more=_words(raw.get("more")),
            feedback=_words(raw.get("feedback")),
            end_human=_words(raw.get("end_human")),
            reset_audience=_words(raw.get("reset_audience")),
            prefixes=_ordered(choice.get("prefixes")),
            suffixes=_ordered(choice.get("suffixes")),
            openings=_ordered(raw.get("statement_openings")),
            tails=_words(raw.get("statement_tails")),
            welcome_topics=tuple(str(t) for t in raw.get("welcome_topics") or []),
            groups=groups,
        )
        for name in ("more", "feedback", "end_human", "reset_audience"):
            if not getattr(conversation, name):
                problems.append(f"needs a non-empty {name!r} list")
        if not conversation.welcome_topics:
            problems.append("needs a non-empty 'welcome_topics' list")
        return conversation, problems

    def number(self, text: str) -> int | None:
        """The number a message picks (「第二个」 → 2), or None when it is not just a number."""
        word = compact(text)
        for prefix in self.prefixes:
            if word.startswith(prefix) and len(word) > len(prefix):
                word = word[len(prefix):]
                break
        for suffix in self.suffixes:
            if word.endswith(suffix) and len(word) > len(suffix):
                word = word[: -len(suffix)]
                break
        if word.isascii() and word.isdigit():
            return int(word) if len(word) <= 3 else None
        if len(word) == 1:
            value = unicodedata.numeric(word, None)
            if value is not None and value == int(value) and value > 0:
                return int(value)
        return None

    def choose(self, text: str, options: list[str]) -> int | None:
        """The 1-based option a message picks by number or by its text; 0 for a number out of range; None otherwise."""
        number = self.number(text)
        if number is not None:
            return number if 1 <= number <= len(options) else 0
        word = compact(text)
        if word:
            for i, option in enumerate(options, 1):
                if compact(option) == word:
                    return i
        return None

    def statement(self, text: str, hints: dict[str, Iterable[str]]) -> tuple[str | None, str]:
        """(audience, the rest of the message) for 「我是研究生，毕业证丢了」; (None, text) when no audience is stated."""
        word = compact(text)
        for opening in self.openings:
            if not word.startswith(opening):
                continue
            after = word[len(opening):]
            best: tuple[int, str] | None = None
            for audience, words in hints.items():
                for hint in (compact(h) for h in words):
                    if hint and after.startswith(hint) and (best is None or len(hint) > best[0]):
                        best = (len(hint), audience)
            if best is None:
                continue
            rest = after[best[0]:]
            for tail in sorted(self.tails, key=len, reverse=True):
                if rest.startswith(tail):
                    rest = rest[len(tail):]
                    break
            return best[1], self._remainder(text, len(opening) + best[0], rest)
        return None, text

    @staticmethod
    def _remainder(text: str, consumed: int, rest: str) -> str:
        """The question after the statement, in the student's own characters when it can be found."""
        if not rest:
            return ""
        position = text.find(rest[:2]) if len(rest) >= 2 else -1
        return text[position:].strip() if position >= 0 else rest
