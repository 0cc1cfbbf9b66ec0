"""Students' words → the canonical tokens the matcher compares.

WeChat questions are short, colloquial and full of typos typed with a pinyin
keyboard (学信王, 学力认正, 密马). ``Analyzer`` turns a message into content
tokens, driven by the data files in ``knowledge/lexicon/``:

1. ``clean``: NFKC (full-width → half-width), lower case, punctuation and emoji
   become spaces, overly long input is cut.
2. ``correct``: a substring that sounds like a known term (same toneless pinyin,
   a character in common, and not itself a common word) becomes that term, so
   typos are caught even when no synonym lists them.
3. a private jieba tokenizer that knows every lexicon word cuts the text (the
   global ``jieba`` tokenizer is never touched).
4. each word is mapped to its canonical form (``synonyms.yaml``) and stop words
   are dropped; a compound is followed by the known terms it is made of.
5. ``parse`` also reports the *qualified things*: a noun right before a thing
   (``objects.txt``), as 高中 in 高中学籍 or 辅导员 in 辅导员电话. Nouns are told
   from verbs, numbers and time words (补办毕业证, 一张毕业证, 去年毕业证) by the
   part-of-speech tags of jieba's dictionary.
"""
from __future__ import annotations

import logging
import marshal
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import jieba
import yaml
from pypinyin import Style, lazy_pinyin, pinyin

jieba.setLogLevel(logging.WARNING)  # its dictionary-loading chatter is not ours to print

LEXICON_DIR = Path(__file__).resolve().parent / "lexicon"
# A WeChat question is a sentence or two; past this, extra text only costs time.
MAX_CHARS = 300
# A homophone is not "corrected" when it is itself at least this common a word.
COMMON_WORD_FREQ = 20
# Weight of user terms in the tokenizer, so that domain terms win over general words.
TERM_FREQ = 3000
# jieba part-of-speech tags of words that cannot name a kind of thing: verbs, numbers, time
# and place words (以前), adverbs, pronouns, adjectives, idioms, set phrases, particles
# (补办, 一张, 去年, 刚刚, 这个, 没用过).
NOT_NOUN_TAGS = frozenset("v vd vg vi vq m mq q t tg f d ad dg r rr rz c p u ul uj uz ud ug uv y e o x k i l z zg a ag b g".split())

_NON_WORD = re.compile(r"[^0-9a-z\u3400-\u9fff]+")
_CJK = re.compile(r"^[\u3400-\u9fff]+$")


class LexiconError(ValueError):
    """A lexicon file is malformed; the message lists every problem."""


def _lines(path: Path) -> list[str]:
    """Non-empty lines of a word list, without ``#`` comments."""
    if not path.exists():
        return []
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            words.append(line)
    return words


def clean(text: str) -> str:
    """Normalised surface text: NFKC, lower case, runs of non-word characters as one space."""
    text = unicodedata.normalize("NFKC", (text or "")[: MAX_CHARS * 2]).lower()
    return _NON_WORD.sub(" ", text).strip()[:MAX_CHARS]


def compact(text: str) -> str:
    """``clean`` without spaces: the form rule keywords and small-talk phrases are compared in."""
    return clean(text).replace(" ", "")


@dataclass(frozen=True)
class Lexicon:
    """The editable word lists: user dictionary, synonym families, stop words, objects, small talk."""

    words: tuple[str, ...]
    canonical: dict[str, str]
    stopwords: frozenset[str]
    objects: frozenset[str]
    object_suffixes: tuple[str, ...]
    smalltalk: dict[str, tuple[str, ...]]
    heads: frozenset[str] = frozenset()  # general things (学籍, 证书, 电话): a noun before one makes another thing
    describing: frozenset[str] = frozenset()  # words that describe a thing without making it another (纸质, 函授, 妹妹)

    @classmethod
    def load(cls, folder: Path = LEXICON_DIR) -> "Lexicon":
        problems: list[str] = []
        words = tuple(clean(line.split()[0]) for line in _lines(folder / "userdict.txt"))
        canonical: dict[str, str] = {}
        families = yaml.safe_load((folder / "synonyms.yaml").read_text(encoding="utf-8")) or {}
        if not isinstance(families, dict):
            raise LexiconError("synonyms.yaml: must map each canonical word to a list of variants")
        for head, variants in families.items():
            head = clean(str(head))
            if not isinstance(variants, list):
                problems.append(f"synonyms.yaml [{head}]: variants must be a list")
                continue
            for word in [head, *(clean(str(v)) for v in variants)]:
                if not word:
                    problems.append(f"synonyms.yaml [{head}]: empty variant")
                elif canonical.get(word, head) != head:
                    problems.append(f"synonyms.yaml: {word!r} is in both {canonical[word]!r} and {head!r}")
                else:
                    canonical[word] = head
        talk_raw = yaml.safe_load((folder / "smalltalk.yaml").read_text(encoding="utf-8")) or {}
        smalltalk: dict[str, tuple[str, ...]] = {}
        for kind in ("human", "help", "thanks", "greeting"):
            phrases = talk_raw.get(kind) if isinstance(talk_raw, dict) else None
            if not isinstance(phrases, list) or not phrases:
                problems.append(f"smalltalk.yaml: needs a non-empty list {kind!r}")
                continue
            smalltalk[kind] = tuple(sorted({compact(str(p)) for p in phrases} - {""}, key=len, reverse=True))
        if problems:
            raise LexiconError("\n".join(problems))
        stopwords = frozenset(clean(w) for w in _lines(folder / "stopwords.txt"))
        lines = _lines(folder / "objects.txt")
        objects = [clean(w) for w in lines if w[0] not in "*+-"]
        suffixes = tuple(clean(w[1:]) for w in lines if w.startswith("*") and clean(w[1:]))
        heads = [clean(w[1:]) for w in lines if w.startswith("+") and clean(w[1:])]
        describing = [clean(w[1:]) for w in lines if w.startswith("-") and clean(w[1:])]
        return cls(
            words=tuple(dict.fromkeys([*words, *objects])),
            canonical=canonical,
            stopwords=stopwords,
            objects=frozenset(canonical.get(w, w) for w in objects),
            object_suffixes=suffixes,
            smalltalk=smalltalk,
            heads=frozenset(canonical.get(w, w) for w in heads),
            describing=frozenset(canonical.get(w, w) for w in describing),
        )


def _not_nouns() -> frozenset[str]:
    """The words of jieba's dictionary whose part-of-speech tag is in ``NOT_NOUN_TAGS`` (none if
    the dictionary file cannot be read: then every dictionary word may be a noun)."""
    words = set()
    try:
        with open(Path(jieba.__file__).parent / jieba.DEFAULT_DICT_NAME, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] in NOT_NOUN_TAGS:
                    words.add(parts[0])
    except OSError:
        pass
    return frozenset(words)


@lru_cache(maxsize=1)
def _jieba_dictionary() -> tuple[dict[str, int], int, frozenset[str]]:
    """jieba's default dictionary and its words that are no nouns, read once per process
    (the slow part of start-up).

    jieba's own cache is read with ``marshal.load`` on a file, object by object,
    which takes about three times as long as ``marshal.loads`` on the whole file;
    so the dictionary is kept in a cache of our own, read in one go.
    """
    cache = Path(tempfile.gettempdir()) / f"xueji-jieba-{jieba.__version__}-pos.marshal"
    try:
        freq, total, not_nouns = marshal.loads(cache.read_bytes())
        if isinstance(freq, dict) and isinstance(total, int) and isinstance(not_nouns, frozenset) and freq:
            return freq, total, not_nouns
    except (OSError, ValueError, EOFError, TypeError):
        pass
    base = jieba.Tokenizer()
    base.initialize()
    not_nouns = _not_nouns()
    partial = cache.with_suffix(f".{os.getpid()}.tmp")
    try:
        partial.write_bytes(marshal.dumps((base.FREQ, base.total, not_nouns)))
        partial.replace(cache)
    except OSError:
        partial.unlink(missing_ok=True)
    return base.FREQ, base.total, not_nouns


def _tokenizer(terms: Iterable[str]) -> jieba.Tokenizer:
    """A private jieba tokenizer: the default dictionary plus ``terms``; the global one stays untouched."""
    freq, total, _ = _jieba_dictionary()
    tokenizer = jieba.Tokenizer()
    tokenizer.FREQ, tokenizer.total, tokenizer.initialized = dict(freq), total, True
    for term in terms:
        if term and not term.isspace():
            tokenizer.add_word(term, max(freq.get(term, 0), TERM_FREQ))
    return tokenizer


@dataclass(frozen=True)
class Parsed:
    """One message, analysed: see ``Analyzer.parse``."""

    words: list[str]
    tokens: list[str]
    pairs: list[tuple[str, str]] = field(default_factory=list)


@lru_cache(maxsize=8192)
def _readings(char: str) -> frozenset[str]:
    """Every toneless pinyin reading of one character (empty for non-Chinese)."""
    if not _CJK.match(char):
        return frozenset()
    return frozenset(pinyin(char, style=Style.NORMAL, heteronym=True)[0])


class Analyzer:
    """Turns text into canonical content tokens; built once per ``Matcher``."""

    def __init__(self, lexicon: Lexicon):
        self.lexicon = lexicon
        self.canonical = dict(lexicon.canonical)
        terms = {clean(t).replace(" ", "") for t in [*lexicon.words, *lexicon.canonical]} - {""}
        for term in terms:
            self.canonical.setdefault(term, term)
        self.tokenizer = _tokenizer(sorted(terms | {w for w in lexicon.stopwords if len(w) > 1}))
        self._common, _, self._not_nouns = _jieba_dictionary()
        self._parts_cache: dict[str, list[str]] = {}
        self._things = lexicon.objects | lexicon.heads
        self._trie: dict = {}
        for term in terms:
            if len(term) >= 2 and _CJK.match(term):
                self._add_sound(term)

    def _add_sound(self, term: str) -> None:
        node = self._trie
        for syllable in lazy_pinyin(term, style=Style.NORMAL):
            node = node.setdefault(syllable, {})
        node.setdefault("", set()).add(term)

    def _sounds_like(self, text: str, start: int) -> list[tuple[int, set[str]]]:
        """(end, terms) for every known term pronounced like ``text[start:end]``."""
        found, frontier = [], [self._trie]
        for end in range(start, len(text)):
            readings = _readings(text[end])
            frontier = [node[r] for node in frontier for r in readings if r in node]
            if not frontier:
                break
            terms = set().union(*(node.get("", set()) for node in frontier))
            if terms:
                found.append((end + 1, terms))
        return found

    def _straddled(self, text: str, start: int, end: int) -> bool:
        """True if a common word crosses an edge of a short ``text[start:end]`` (学生|征兵, 高|考时):
        the piece is then part of other words, not a mistyped term, and is left alone. A long
        piece (学力认正) sounding like a term is a typo whatever its neighbours."""
        if end - start > 3:
            return False
        edges = (text[start - 1 : start + 1] if start > 0 else "", text[end - 1 : end + 1] if end < len(text) else "")
        return any(self._common.get(pair, 0) >= COMMON_WORD_FREQ for pair in edges if len(pair) == 2)

    def correct(self, text: str) -> str:
        """Replace homophone typos of known terms by their canonical form; known words stay as they are."""
        out, i = [], 0
        while i < len(text):
            replaced = False
            for end, terms in reversed(self._sounds_like(text, i)):
                piece = text[i:end]
                if piece in terms:
                    out.append(piece)
                elif self._common.get(piece, 0) >= COMMON_WORD_FREQ or self._straddled(text, i, end):
                    continue
                else:
                    choice = {self.canonical[t] for t in terms if set(t) & set(piece)}
                    if len(choice) != 1:
                        continue
                    out.append(f" {choice.pop()} ")
                i, replaced = end, True
                break
            if not replaced:
                out.append(text[i])
                i += 1
        return "".join(out)

    def frequency(self, word: str) -> int:
        """How common ``word`` is in general Chinese (jieba's dictionary count; 0 if unknown)."""
        return self._common.get(word, 0)

    def parts(self, word: str) -> list[str]:
        """The known terms a word of two characters or more is made of (手机短信 → 手机号, 短信)."""
        return self._parts(word) if len(word) > 1 and _CJK.match(word) else []

    def _parts(self, piece: str) -> list[str]:
        """Known terms a compound is made of (实名注册 → 注册), so compounds still overlap with their parts.

        The compound is re-cut as if it were not a word itself (jieba's best route
        without the whole-word edge), so it splits where jieba would split it, never
        at a known word straddling two of its parts.
        """
        if piece not in self._parts_cache:
            dag = self.tokenizer.get_DAG(piece)
            dag[0] = [end for end in dag[0] if end != len(piece) - 1] or [0]
            route: dict = {}
            self.tokenizer.calc(piece, dag, route)
            own, parts, start = self.canonical.get(piece, piece), [], 0
            while start < len(piece):
                end = route[start][1] + 1
                word = self.canonical.get(piece[start:end])
                if end - start > 1 and word and word != own and word not in self.lexicon.stopwords:
                    parts.append(word)
                start = end
            self._parts_cache[piece] = parts
        return self._parts_cache[piece]

    def _joined(self, pieces: Iterable[str]) -> list[str]:
        """The cut pieces, stripped, with a lone object suffix (卡, 证) joined to the word before it:
        jieba cuts 学籍卡 into 学籍 + 卡, but the message is about a 学籍卡, not about 学籍. A joined
        X证 that is short for a known X证书 (学历证) reads as that."""
        out: list[str] = []
        for piece in pieces:
            piece = piece.strip()
            prev = out[-1] if out else ""
            if piece in self.lexicon.object_suffixes and len(prev) > 1 and _CJK.match(prev) and prev not in self.lexicon.stopwords:
                joined = prev + piece
                out[-1] = joined + "书" if joined not in self.canonical and joined + "书" in self.canonical else joined
            else:
                out.append(piece)
        return out

    def noun(self, piece: str) -> bool:
        """True if ``piece`` can name a kind of thing: a thing of ``objects.txt``, or a word of
        jieba's dictionary not tagged as a verb, number, time word and the like. A piece made
        only of stop characters (时说) is no word."""
        if self.canonical.get(piece, piece) in self._things:
            return True
        if all(c in self.lexicon.stopwords for c in piece):
            return False
        return piece in self._common and piece not in self._not_nouns

    def parse(self, text: str) -> "Parsed":
        """The canonical content words in order (each once), the tokens (words and the parts of
        compounds) and the qualified things: (noun, thing) for a noun right before a thing of
        ``objects.txt`` (高中毕业证, 辅导员电话; not 妹妹的毕业证, where 的 makes it whose it is)."""
        words: dict[str, None] = {}
        tokens: dict[str, None] = {}
        pairs: list[tuple[str, str]] = []
        prev = ""
        for piece in self._joined(self.tokenizer.cut(self.correct(clean(text)), HMM=False)):
            if not piece or piece in self.lexicon.stopwords:
                prev = ""
                continue
            word = self.canonical.get(piece, piece)
            if word in self._things and len(prev) > 1 and _CJK.match(prev) and self.noun(prev):
                pairs.append((self.canonical.get(prev, prev), word))
            prev = piece
            if word not in self.lexicon.stopwords:
                words.setdefault(word, None)
                tokens.setdefault(word, None)
            if len(piece) > 2 and _CJK.match(piece):
                for part in self._parts(piece):
                    tokens.setdefault(part, None)
        return Parsed(list(words), list(tokens), pairs)

    def analyse(self, text: str) -> tuple[list[str], list[str]]:
        """(words, tokens): the canonical content words in order, each once; tokens add the parts of compounds."""
        parsed = self.parse(text)
        return parsed.words, parsed.tokens

    def tokens(self, text: str) -> list[str]:
        """Canonical content tokens in order of appearance, each once; compounds are followed by their parts."""
        return self.analyse(text)[1]
