"""Students' words → the normalised text and the views the matcher's model reads.

WeChat questions are short, colloquial, typed with a pinyin keyboard (学信王,
学力认正), sometimes in traditional characters (學信網), in pinyin (biyezheng) or
with English and abbreviations (chsi, forgot password). Everything here is
driven by the data files in ``knowledge/lexicon/``:

1. ``Lexicon.normalise``: NFKC (full-width → half-width), lower case, OpenCC
   traditional → simplified, then Latin words are mapped through
   ``aliases.yaml`` (chsi → 学信网); punctuation and emoji become spaces.
2. ``Analyzer.words``: a private jieba tokenizer that knows every lexicon word
   (the global ``jieba`` tokenizer is never touched).
3. ``Analyzer.tokens``: the words with homophone typos corrected (a substring
   that sounds like a known term becomes that term), mapped to their canonical
   form (``synonyms.yaml``), stop words dropped, compounds followed by their parts.
4. ``Analyzer.syllables``: the toneless pinyin of the text; Latin runs that
   spell pinyin (biyezheng diule) are cut into syllables, so pinyin typed by a
   student meets the pinyin of the entries' Chinese.
"""
from __future__ import annotations

import logging
import marshal
import os
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import jieba
import opencc
import yaml

# pypinyin's phrase dictionary (45 MB in every process) only tells heteronyms apart in running text;
# this module reads characters one at a time, so it is never loaded, nor the character table copied.
os.environ.setdefault("PYPINYIN_NO_PHRASES", "1")
os.environ.setdefault("PYPINYIN_NO_DICT_COPY", "1")
from pypinyin import Style, lazy_pinyin, pinyin  # noqa: E402 (after the two settings above)

from .cache import path as cache_path  # noqa: E402

SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it: 10x faster

jieba.setLogLevel(logging.WARNING)  # its dictionary-loading chatter is not ours to print

LEXICON_DIR = Path(__file__).resolve().parent / "lexicon"
# A WeChat question is a sentence or two; past this, extra text only costs time.
MAX_CHARS = 300
# A homophone is not "corrected" when it is itself at least this common a word.
COMMON_WORD_FREQ = 20
# jieba's words rarer than this are left out of the tokenizer's dictionary (CV: as good as all of them).
RARE_WORD_FREQ = 5
# Weight of user terms in the tokenizer, so that domain terms win over general words.
TERM_FREQ = 3000

_NON_WORD = re.compile(r"[^0-9a-z\u3400-\u9fff]+")
_CJK = re.compile(r"^[\u3400-\u9fff]+$")
_LATIN_RUN = re.compile(r"[a-z]+(?: +[a-z]+)*")
_INFLECTIONS = ("ing", "ed", "es", "s", "d")  # English endings an alias is also found without
_T2S = opencc.OpenCC("t2s")
_TONE_MARKS = str.maketrans("āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜüńňǹḿ", "aaaaeeeeiiiioooouuuuvvvvvnnnm")
_SYMBOLS = re.compile(r"^[^\w\s]+$")  # a small-talk phrase that is all emoji or symbols


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
    """Normalised surface text: NFKC, lower case, pinyin without tone marks, simplified characters,
    runs of non-word characters as one space. Only the first ``MAX_CHARS * 2`` characters are read."""
    return _clean((text or "")[: MAX_CHARS * 2])


@lru_cache(maxsize=8192)
def _clean(text: str) -> str:
    """``clean`` of a text already cut to length, kept for the next call: a message is looked at by
    the dialog, the rules, small talk and the model, and students send the same texts (cut first, so
    a 60 KB message costs the cache no more than a short one)."""
    text = unicodedata.normalize("NFKC", text).lower().translate(_TONE_MARKS)
    return _NON_WORD.sub(" ", _T2S.convert(text)).strip()[:MAX_CHARS]


def compact(text: str) -> str:
    """``clean`` without spaces: the form rule keywords and small-talk phrases are compared in."""
    return clean(text).replace(" ", "")


def _yaml(path: Path) -> object:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER) if path.exists() else None
    except yaml.YAMLError as exc:
        raise LexiconError(f"{path.name}: {exc}") from exc


@dataclass(frozen=True)
class Lexicon:
    """The editable word lists: user dictionary, synonym families, stop words, aliases, small talk."""

    words: tuple[str, ...]
    canonical: dict[str, str]
    stopwords: frozenset[str]
    aliases: dict[str, str]  # a Latin word (spaces removed) → the Chinese it stands for
    smalltalk: dict[str, tuple[str, ...]]  # kind → phrases as ``clean`` text, longest first
    emoji: dict[str, str]  # a small-talk phrase of symbols only (👋) → its kind

    @classmethod
    def load(cls, folder: Path = LEXICON_DIR) -> "Lexicon":
        problems: list[str] = []
        words = tuple(clean(line.split()[0]) for line in _lines(folder / "userdict.txt"))
        canonical: dict[str, str] = {}
        families = _yaml(folder / "synonyms.yaml") or {}
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
        raw_aliases = _yaml(folder / "aliases.yaml") or {}
        aliases: dict[str, str] = {}
        if not isinstance(raw_aliases, dict) or not isinstance(raw_aliases.get("aliases", {}), dict):
            problems.append("aliases.yaml: needs a mapping 'aliases' of Latin words to Chinese")
        else:
            for latin, chinese in (raw_aliases.get("aliases") or {}).items():
                key = compact(str(latin))
                if not key.isascii() or not key or not compact(str(chinese or "")) or _LATIN_RUN.search(clean(str(chinese))):
                    problems.append(f"aliases.yaml [{latin}]: needs a Latin word and a Chinese replacement (no Latin letters)")
                else:
                    aliases[key] = compact(str(chinese))
        talk_raw = _yaml(folder / "smalltalk.yaml") or {}
        smalltalk: dict[str, tuple[str, ...]] = {}
        emoji: dict[str, str] = {}
        for kind in ("human", "help", "thanks", "greeting"):
            phrases = talk_raw.get(kind) if isinstance(talk_raw, dict) else None
            if not isinstance(phrases, list) or not phrases:
                problems.append(f"smalltalk.yaml: needs a non-empty list {kind!r}")
                continue
            for p in phrases:
                if _SYMBOLS.match(str(p).strip()):
                    emoji[str(p).strip()] = kind
            smalltalk[kind] = tuple(sorted({clean(str(p)) for p in phrases} - {""}, key=lambda p: (-len(p), p)))
        if problems:
            raise LexiconError("\n".join(problems))
        return cls(
            words=words,
            canonical=canonical,
            stopwords=frozenset(clean(w) for w in _lines(folder / "stopwords.txt")),
            aliases=aliases,
            smalltalk=smalltalk,
            emoji=emoji,
        )

    def normalise(self, text: str) -> str:
        """``clean`` text with Latin words replaced by the Chinese they stand for (longest alias first)."""
        return _LATIN_RUN.sub(lambda m: self._latin(m.group(0)), clean(text)) if self.aliases else clean(text)

    def _latin(self, run: str) -> str:
        """A run of Latin words with its aliases put in.

        Aliases are found at word boundaries, the longest sequence of words first (spaces ignored:
        xue xin wang, phone number), trying an English word also without its inflection
        (registered → register). A word that spells pinyin is also searched inside
        (biyezhengdiule → 毕业证 丢了); other words are never cut (information holds no form)."""
        words, out, i = run.split(), [], 0
        while i < len(words):
            for j in range(len(words), i, -1):
                chinese = self._alias("".join(words[i:j]))
                if chinese is not None:
                    out.append(chinese)
                    i = j
                    break
            else:
                out.append(self._inside(words[i]) if spell(words[i]) else words[i])
                i += 1
        return " ".join(out)

    def _alias(self, key: str) -> str | None:
        """The Chinese of one alias key, or of the key without an English inflection; else None."""
        if key in self.aliases:
            return self.aliases[key]
        for suffix in _INFLECTIONS:
            if key.endswith(suffix) and key[: -len(suffix)] in self.aliases:
                return self.aliases[key[: -len(suffix)]]
        return None

    def _inside(self, letters: str) -> str:
        """One word of pinyin letters with every alias found in it replaced, longest first."""
        pieces, rest, i = [], "", 0
        longest = max(map(len, self.aliases))
        while i < len(letters):
            end = next((e for e in range(min(len(letters), i + longest), i, -1) if letters[i:e] in self.aliases), None)
            if end is None:
                rest, i = rest + letters[i], i + 1
            else:
                pieces += [rest, self.aliases[letters[i:end]]]
                rest, i = "", end
        return " ".join(p for p in [*pieces, rest] if p) if pieces else letters


def _dictionary_bytes() -> bytes:
    """jieba's default dictionary without its rarest words, marshalled: (word → frequency, total).

    Read from a cache of our own: jieba's reads its cache with ``marshal.load`` on a file, object
    by object, about three times as slow as ``marshal.loads`` on the whole file. Words rarer than
    RARE_WORD_FREQ (mostly names, idioms and long compounds) are left out: they hold two thirds
    of the dictionary's memory, and a student's question rarely needs them cut whole."""
    cache = cache_path(f"xueji-jieba-{jieba.__version__}-{RARE_WORD_FREQ}.marshal")
    try:
        data = cache.read_bytes()
        freq, total = marshal.loads(data)
        if isinstance(freq, dict) and isinstance(total, int) and freq:
            return data
    except (OSError, ValueError, EOFError, TypeError):
        pass
    base = jieba.Tokenizer()
    base.initialize()
    kept: dict[str, int] = {}
    for word, n in base.FREQ.items():
        if n >= RARE_WORD_FREQ:
            kept[word] = n
            for end in range(1, len(word)):
                kept.setdefault(word[:end], 0)  # jieba's prefix entries, which its word graph walks
    data = marshal.dumps((kept, base.total))
    partial = cache.with_suffix(f".{os.getpid()}.tmp")
    try:
        partial.write_bytes(data)
        partial.replace(cache)
    except OSError:
        partial.unlink(missing_ok=True)
    return data


@lru_cache(maxsize=1)
def _tokenizer(terms: tuple[str, ...]) -> tuple[jieba.Tokenizer, frozenset[str]]:
    """A private jieba tokenizer: the dictionary plus ``terms`` (the global one stays untouched),
    and the dictionary's words at least COMMON_WORD_FREQ common (never taken for typos).

    One per process for the lexicon in use (Matchers built on the same lexicon share it; it is
    only read once built), so the dictionary is in memory once."""
    freq, total = marshal.loads(_dictionary_bytes())
    common = frozenset(w for w, n in freq.items() if n >= COMMON_WORD_FREQ)
    tokenizer = jieba.Tokenizer()
    tokenizer.FREQ, tokenizer.total, tokenizer.initialized = freq, total, True
    for term in terms:
        if term and not term.isspace():
            tokenizer.add_word(term, max(freq.get(term, 0), TERM_FREQ))
    return tokenizer, common


@lru_cache(maxsize=16384)
def _readings(char: str) -> frozenset[str]:
    """Every toneless pinyin reading of one character (empty for non-Chinese)."""
    if not _CJK.match(char):
        return frozenset()
    return frozenset(pinyin(char, style=Style.NORMAL, heteronym=True)[0])


@lru_cache(maxsize=16384)
def syllable(char: str) -> str:
    """The usual toneless pinyin of one character."""
    return lazy_pinyin(char, style=Style.NORMAL)[0]


@lru_cache(maxsize=1)
def _all_syllables() -> frozenset[str]:
    """Every toneless pinyin syllable (to cut Latin runs that spell pinyin)."""
    from pypinyin.constants import PINYIN_DICT

    return frozenset(r.translate(_TONE_MARKS) for readings in PINYIN_DICT.values() for r in readings.split(",")) - {""}


@lru_cache(maxsize=4096)
def spell(letters: str) -> tuple[str, ...]:
    """``letters`` cut into pinyin syllables (fewest syllables), or () if it does not spell pinyin."""
    syllables = _all_syllables()
    best: list[tuple[str, ...] | None] = [()] + [None] * len(letters)
    for end in range(1, len(letters) + 1):
        for start in range(max(0, end - 6), end):
            prev = best[start]
            if prev is not None and letters[start:end] in syllables:
                if best[end] is None or len(prev) + 1 < len(best[end]):  # type: ignore[arg-type]
                    best[end] = (*prev, letters[start:end])
    return best[-1] or ()


class Analyzer:
    """Normalised text → words, canonical tokens and syllables; built once per ``Matcher``."""

    def __init__(self, lexicon: Lexicon):
        self.lexicon = lexicon
        self.canonical = dict(lexicon.canonical)
        terms = {compact(t) for t in [*lexicon.words, *lexicon.canonical, *lexicon.aliases.values()]} - {""}
        for term in terms:
            self.canonical.setdefault(term, term)
        self.tokenizer, self._common = _tokenizer(tuple(sorted(terms | {w for w in lexicon.stopwords if len(w) > 1})))
        self._parts_cache: dict[str, list[str]] = {}
        self.pinyin_words: dict[str, str] = {}  # from the training texts' words (use_pinyin)
        self._pinyin_prefixes: set[str] = set()
        self._trie: dict = {}
        for term in sorted(terms):
            if len(term) >= 2 and _CJK.match(term):
                self._add_sound(term)

    def normalise(self, text: str) -> str:
        """``Lexicon.normalise``, then Latin that spells the pinyin of a known word becomes that word."""
        text = self.lexicon.normalise(text)
        return _LATIN_RUN.sub(lambda m: self._pinyin(m.group(0)), text) if self.pinyin_words and _LATIN_RUN.search(text) else text

    @staticmethod
    def pinyin_of_words(words: Iterable[str]) -> dict[str, str]:
        """The toneless pinyin of each word of two characters or more (zicha) → the word (自查);
        when several words sound alike, the most frequent in ``words`` wins."""
        counts: dict[str, int] = {}
        for word in words:
            if len(word) > 1 and _CJK.match(word):
                counts[word] = counts.get(word, 0) + 1
        best: dict[str, tuple[int, str]] = {}
        for word, n in counts.items():
            key = "".join(syllable(c) for c in word)
            if key not in best or (-n, word) < (-best[key][0], best[key][1]):
                best[key] = (n, word)
        return {key: word for key, (_, word) in sorted(best.items())}

    def use_pinyin(self, mapping: dict[str, str]) -> None:
        """Read Latin that spells one of these pinyin keys as its word (see ``pinyin_of_words``)."""
        self.pinyin_words = dict(mapping)
        self._pinyin_prefixes = {key[:n] for key in self.pinyin_words for n in range(2, len(key) + 1)}

    def _keys_at(self, letters: str, start: int) -> list[tuple[int, str]]:
        """(end, word) for every pinyin key ``letters`` spells from ``start`` on (two letters or more)."""
        found, end = [], start + 2
        while end <= len(letters) and letters[start:end] in self._pinyin_prefixes:
            if letters[start:end] in self.pinyin_words:
                found.append((end, self.pinyin_words[letters[start:end]]))
            end += 1
        return found

    def spelled(self, text: str) -> tuple[tuple[str, str], ...]:
        """The pinyin keys (with their words) that the Latin of ``text`` spells: all that
        ``use_pinyin`` changes of how ``text`` is read, so a reading holds while these stay the same.
        (The Latin left once aliases are put in is part of the Latin of ``clean`` text: an alias's
        replacement holds no Latin letter.)"""
        found = set()
        for run in _LATIN_RUN.findall(clean(text)):
            letters = run.replace(" ", "")
            for i in range(len(letters)):
                found.update((letters[i:end], word) for end, word in self._keys_at(letters, i))
        return tuple(sorted(found))

    def _pinyin(self, run: str) -> str:
        """A Latin run with the known words its letters spell put in (most letters covered, fewest words)."""
        letters = run.replace(" ", "")
        best: list[tuple[int, int, tuple[str, ...]]] = [(0, 0, ())] + [(-1, 0, ())] * len(letters)
        for i in range(len(letters)):
            covered, pieces, out = best[i]
            if covered < 0:
                continue
            steps = [(i + 1, letters[i], 0)] + [(end, word, end - i) for end, word in self._keys_at(letters, i)]
            for end, piece, gained in steps:
                candidate = (covered + gained, pieces - 1, (*out, piece))
                if candidate[:2] > best[end][:2]:
                    best[end] = candidate
        covered, _, pieces = best[-1]
        if not covered:
            return run
        return re.sub(r"(?<=[a-z]) (?=[a-z])", "", " ".join(pieces))

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
        the piece is then part of other words, not a mistyped term, and is left alone."""
        if end - start > 3:
            return False
        edges = (text[start - 1 : start + 1] if start > 0 else "", text[end - 1 : end + 1] if end < len(text) else "")
        return any(pair in self._common for pair in edges if len(pair) == 2)

    def correct(self, text: str) -> str:
        """Replace homophone typos of known terms by their canonical form; known words stay as they are."""
        out, i = [], 0
        while i < len(text):
            replaced = False
            for end, terms in reversed(self._sounds_like(text, i)):
                piece = text[i:end]
                if piece in terms:
                    out.append(piece)
                elif piece in self._common or self._straddled(text, i, end):
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

    def words(self, normalised: str) -> list[str]:
        """jieba's words of normalised text, as cut (no correction, no synonyms)."""
        return [w for w in self.tokenizer.cut(normalised, HMM=False) if w.strip()]

    def _parts(self, piece: str) -> list[str]:
        """Known terms a compound is made of (实名注册 → 注册), so compounds still overlap with their parts."""
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

    def tokens(self, text: str, normalised: bool = False, words: list[str] | None = None) -> list[str]:
        """Canonical content tokens in order of appearance, each once; compounds are followed by their parts.

        ``words``, jieba's cut of the normalised text if the caller has it, saves cutting it again
        when correcting typos changes nothing."""
        text = text if normalised else self.normalise(text)
        corrected = self.correct(text)
        pieces = words if words is not None and corrected == text else self.tokenizer.cut(corrected, HMM=False)
        tokens: dict[str, None] = {}
        for piece in pieces:
            piece = piece.strip()
            if not piece or piece in self.lexicon.stopwords:
                continue
            word = self.canonical.get(piece, piece)
            if word not in self.lexicon.stopwords:
                tokens.setdefault(word, None)
            if len(piece) > 2 and _CJK.match(piece):
                for part in self._parts(piece):
                    tokens.setdefault(part, None)
        return list(tokens)

    def syllables(self, normalised: str) -> list[str]:
        """Toneless pinyin of normalised text; a Latin word that spells pinyin is cut into its syllables."""
        out: list[str] = []
        for chunk in normalised.split():
            for run in re.findall(r"[a-z]+|[\u3400-\u9fff]+|[0-9]+", chunk):
                if run[0].isascii():
                    out.extend(spell(run) if run.isalpha() else ())
                else:
                    out.extend(syllable(c) for c in run)
        return out
