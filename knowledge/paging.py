"""Split long answers into WeChat-sized pages.

WeChat silently cuts a text reply past 2047 UTF-8 bytes, so a long answer is
served as pages ("更多"). Pages break at paragraph, then line, then sentence
boundaries, never inside a sentence, and every page (trailer included) fits.
"""
from __future__ import annotations

import re

REPLY_LIMIT = 2047
_SENTENCE_END = re.compile(r"(?<=[。！？；!?;])")


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _pieces(text: str) -> list[str]:
    """Break text into the smallest units a page may end on, keeping every character."""
    pieces: list[str] = []
    for line in text.splitlines(keepends=True):
        pieces.extend(p for p in _SENTENCE_END.split(line) if p)
    return pieces


def _best_break(chunk: str) -> int:
    """Where a page should end inside ``chunk``: last blank line, else last line end."""
    cut = chunk.rfind("\n\n")
    if cut > 0:
        return cut + 2
    cut = chunk.rfind("\n")
    return cut + 1 if cut > 0 else len(chunk)


def split_chunks(text: str, budget: int) -> list[str]:
    """Contiguous chunks of ``text`` (``"".join`` gives ``text`` back), each ≤ budget bytes once stripped.

    A single sentence longer than the budget is the only thing ever cut inside,
    and only at a character boundary, because it cannot be served otherwise.
    """
    def fits(chunk: str) -> bool:
        return utf8_len(chunk.strip()) <= budget

    chunks: list[str] = []
    current = ""
    for piece in _pieces(text):
        if fits(current + piece):
            current += piece
            continue
        if current.strip():
            cut = _best_break(current)
            if 0 < cut < len(current) and fits(current[cut:] + piece):
                chunks.append(current[:cut])
                current = current[cut:] + piece
                continue
            chunks.append(current)
            current = piece
        else:
            current += piece
        while not fits(current):
            head = current.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
            chunks.append(head)
            current = current[len(head):]
    if current:
        if chunks and not current.strip():
            chunks[-1] += current
        else:
            chunks.append(current)
    return chunks or [text]


def paginate(text: str, trailer: str, limit: int = REPLY_LIMIT) -> list[str]:
    """The pages a student sees: each stripped chunk, all but the last followed by ``trailer``."""
    text = text.strip()
    if utf8_len(text) <= limit:
        return [text]
    joiner = "\n\n"
    budget = limit - utf8_len(joiner + trailer)
    chunks = [c.strip() for c in split_chunks(text, budget)]
    chunks = [c for c in chunks if c]
    return [c + joiner + trailer if i < len(chunks) - 1 else c for i, c in enumerate(chunks)]


def truncate(text: str, limit: int = REPLY_LIMIT, ellipsis: str = "…") -> str:
    """Last-resort guard for any reply: never hand WeChat more than it shows."""
    if utf8_len(text) <= limit:
        return text
    room = limit - utf8_len(ellipsis)
    return text.encode("utf-8")[:room].decode("utf-8", errors="ignore") + ellipsis
