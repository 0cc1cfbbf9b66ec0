"""Decide what to do with one student message: rule, small talk, answer, clarify or fall back.

Staff keyword rules (``knowledge/rules.yaml``) win over everything, then small
talk (the phrases of ``lexicon/smalltalk.yaml``), then a model learned from the
knowledge base itself; a message it cannot answer may still be small talk that
no phrase names (a second model, over the same features, learned from those
phrases and the labelled sets' small talk). Matching is a pipeline:

1. normalise: NFKC, traditional → simplified, lower case, Latin aliases
   (``knowledge.text``);
2. features: three views of the text (jieba words, synonym-normalised tokens,
   pinyin syllables and syllable pairs), each TF-IDF weighted and scaled to
   unit length (character n-grams are a fourth view that did not pay on
   cross-validation);
3. model: a logistic regression over every entry plus an "out of domain"
   class, trained on the entries' questions, similar questions, keywords and
   answer text (keywords and answer text at their own sample weight, chosen by
   cross-validation in ``bench/accuracy.py``), the labelled question sets shipped
   in ``bench/`` and the negative examples of ``lexicon/out_of_domain.yaml``;
4. candidates: the entries ranked by the model's probability;
5. decide: a second, small logistic regression fitted on out-of-fold predictions
   turns the ranking into a calibrated probability that the top entry is right;
   at ``ANSWER_AT`` or above it is answered; otherwise, if the question is likely
   in the domain and a few entries share the probability, they are offered;
   else, if the small-talk model holds one kind at ``TALK_AT`` or above, that
   kind is served (你好呀小助手, 有人没); else the message falls back.

Training is deterministic (sorted inputs, fixed seeds) and takes one to two seconds;
its result is cached on disk by a digest of everything it learned from, so a
process that starts on known data does not even import scikit-learn.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import marshal
import math
import os
import re
import threading
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Iterator, Literal, Mapping, NamedTuple, Sequence

import jieba
import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .base import KnowledgeBase
from . import cache
from .cache import path as cache_path
from .examples import TRAINING_SETS, QuestionSet, training_sets
from .text import LEXICON_DIR, MAX_CHARS, SAFE_LOADER, Analyzer, Lexicon, LexiconError, clean, compact, syllable

RULES_PATH = Path(__file__).resolve().parent / "rules.yaml"
OOD = "~out-of-domain"  # the model's class for questions no entry answers (sorts after every entry id)
TALK = "~talk:"  # prefix of the small-talk model's classes (~talk:greeting …): what a phrase list misses
NOT_TALK = "~talk"  # its class for every other text
VIEWS = ("word", "syn", "pinyin")  # "char" (character n-grams) is supported; it did not pay on CV
MAX_CHOICES = 4
SOUNDS_LIKE_CHARS = 6  # a message this short that sounds like a small-talk phrase is that phrase mistyped
CHAR_NGRAMS = (1, 2, 3)  # the character view's n-gram lengths

# Chosen on grouped cross-validation over the labelled sets (bench/accuracy.py --cv, --ablate).
ANSWER_AT = 0.75  # calibrated probability that the top entry is right needed to answer
CLARIFY_AT = 0.50  # probability that the question is in the domain needed to offer a choice
TALK_AT = 0.5  # probability of a small-talk kind needed to serve it where no phrase settles the message
CLOSE = 0.05  # a choice lists the entries with at least this share of the top entry's probability
C = 20.0  # inverse regularisation of the model
# "similar" counts twice: a similar question staff add must win over thousands of labelled lines at once
# (at 1.0 a newly added one of unseen words got only a clarify once round 9 was trained on; CV: 2.0 as good as 1.0).
WEIGHTS = {"question": 1.0, "similar": 2.0, "keyword": 0.5, "answer": 0.3, "example": 1.0, "ood": 1.0, "talk": 1.0}
NORM_POWER = 1.0  # each view's TF-IDF block is divided by its length to this power (1: unit length)
MIN_DF = 2  # a term in fewer training texts says nothing the model can learn...
CURATED_FIELDS = ("question", "similar", "keyword")  # ...unless staff wrote it into an entry on purpose
# A pinyin syllable pair (xue_ji) in fewer training texts is left out even then: pairs were two thirds
# of the columns, and the solver's work grows with them. CV: 6, 8 or 12 as good as 2; 8 keeps 60% of
# the columns; no pairs at all cost 0.2 points of hit@1 and 0.8 of small talk. (At 12, a lone 学籍
# leans so far to one entry that it is no longer offered a choice.)
PAIR_MIN_DF = 8
KEEP_MODELS = 16  # trained models kept in the cache folder, most recently used first (3.6 MB each)
KEEP_TERMS = 4  # files of kept terms, one per lexicon version (3.8 MB each)
RARE = "\x00rare"  # the term standing for such words (and, at match time, unknown ones) in these views:
RARE_VIEWS = ("word", "syn")
CALIBRATION_FIELDS = ("question", "similar", "keyword", "example", "ood")  # texts like a student's message
SHARED_BY = 3  # a word in the questions of this many entries is too vague to answer alone
VAGUE_SHARE = 0.1  # the weight of those words, together, in the decider's data (CV: 0.05-0.1 as good as none)
FOLDS = 3  # out-of-fold predictions the decision is calibrated on
SOLVER = "lbfgs"  # scikit-learn's solver for the model
MAX_ITER = 50  # iterations (lbfgs) or passes over the data (saga): a budget (lbfgs at tol 1e-3 stops first: 35-50 same CV)
WARM_ITER = 10  # iterations of each later fold, which starts from the previous fold's weights (CV: as good as 50)
MEMO = 4096  # decisions kept for repeated messages (students send the same twenty questions every September)
CACHE_VERSION = "4"
_CJK_CHAR = re.compile(r"[\u3400-\u9fff]")
_LATIN = re.compile(r"[a-z0-9]")  # Latin letters or digits: the Latin phrases need looking for (thx, 886)


@dataclass(frozen=True)
class Match:
    """The one decision for a message; ``candidates`` are 2-4 ids for clarify, else ranked ids."""

    action: str  # "answer" | "clarify" | "fallback" | "greeting" | "thanks" | "human" | "help" | "rule"
    entry_id: str | None
    candidates: tuple[str, ...]
    score: float
    audience: str | None
    text_key: str | None = None
    text: str | None = None


class Rule(BaseModel):
    """One staff keyword rule: exact (全匹配) or contains (半匹配), answering with an entry, a text or a reply."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    keywords: list[str] = Field(min_length=1)
    match: Literal["exact", "contains"] = "exact"
    entry: str | None = None
    text: str | None = None
    reply: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> "Rule":
        if sum(x is not None for x in (self.entry, self.text, self.reply)) != 1:
            raise ValueError("a rule needs exactly one of entry, text, reply")
        if any(not compact(k) for k in self.keywords):
            raise ValueError("a keyword is empty once spaces and punctuation are removed")
        return self


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[Rule] = []


def load_rules(path: Path, kb: KnowledgeBase) -> list[Rule]:
    """The rules of ``path`` (none if it does not exist); ``ValueError`` lists every problem."""
    if not path.exists():
        return []
    try:
        rules = RulesFile.model_validate(yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER) or {}).rules
    except (ValidationError, yaml.YAMLError) as exc:
        raise ValueError(f"{path.name}: {exc}") from exc
    problems = [
        f"{path.name} rule {i} ({r.keywords[0]}): unknown {'entry' if r.entry else 'text'} {r.entry or r.text!r}"
        for i, r in enumerate(rules, 1)
        if (r.entry and r.entry not in kb.entries) or (r.text and r.text not in kb.texts)
    ]
    if problems:
        raise ValueError("\n".join(problems))
    return rules


def load_out_of_domain(folder: Path) -> list[str]:
    """The negative examples of ``out_of_domain.yaml`` (none if it does not exist)."""
    path = folder / "out_of_domain.yaml"
    if not path.exists():
        return []
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER) or {}
    except yaml.YAMLError as exc:
        raise LexiconError(f"out_of_domain.yaml: {exc}") from exc
    examples = raw.get("examples") if isinstance(raw, dict) else None
    if not isinstance(examples, list) or not all(isinstance(e, str) and e.strip() for e in examples):
        raise LexiconError("out_of_domain.yaml: needs a list 'examples' of non-empty texts")
    return examples


@dataclass(frozen=True)
class Doc:
    """One training text: what it says, the class it stands for, and where it comes from (a WEIGHTS key)."""

    text: str
    label: str
    field: str


def documents(kb: KnowledgeBase, ood: Iterable[str], sets: Sequence[QuestionSet], talk: Mapping[str, Iterable[str]] | None = None) -> list[Doc]:
    """Every training text, in a fixed order: entries by id, then labelled sets (small talk of a known
    kind included), then negative examples, then the small-talk phrases (``talk``: kind → phrases)."""
    docs: list[Doc] = []
    talk = talk or {}
    for entry_id in sorted(kb.entries):
        entry = kb.entries[entry_id]
        docs.append(Doc(entry.question, entry_id, "question"))
        docs += [Doc(s, entry_id, "similar") for s in entry.similar]
        docs += [Doc(k, entry_id, "keyword") for k in entry.keywords]
        for answer in [entry.answer, *(v.answer for v in entry.variants)]:
            text = re.sub(r"\{[a-z_]+\}", " ", answer)
            docs += [Doc(s, entry_id, "answer") for s in re.split(r"[\n。；！？]+", text) if len(s.strip()) >= 4]
    for qs in sets:
        docs += [Doc(i.q, i.expect[0], "example") for i in qs.in_domain if i.expect[0] in kb.entries]
        docs += [Doc(i.q, OOD, "example") for i in qs.out_of_domain]
        docs += [Doc(i.q, TALK + i.kind, "example") for i in qs.smalltalk if i.kind]
    docs += [Doc(text, OOD, "ood") for text in ood]
    docs += [Doc(phrase, TALK + kind, "talk") for kind in sorted(talk) for phrase in sorted(set(talk[kind]))]
    return docs


class Features:
    """Text → sparse TF-IDF vector over the views, one unit-length block per view."""

    def __init__(self, analyzer: Analyzer, views: Sequence[str] = VIEWS):
        self.analyzer = analyzer
        self.views = tuple(views)

    def raw(self, text: str) -> dict[str, list[str]]:
        """Each view's terms of one text (a term once per view)."""
        norm = self.analyzer.normalise(text)
        out: dict[str, list[str]] = {}
        if "char" in self.views:
            grams: list[str] = []
            for run in norm.split():
                grams += [run[i : i + n] for n in CHAR_NGRAMS for i in range(len(run) - n + 1)] if not run.isascii() else [run]
            out["char"] = grams
        words = self.analyzer.words(norm) if "word" in self.views or "syn" in self.views else []
        if "word" in self.views:
            out["word"] = words
        if "syn" in self.views:
            out["syn"] = self.analyzer.tokens(norm, normalised=True, words=words)
        if "pinyin" in self.views:
            syl = self.analyzer.syllables(norm)
            out["pinyin"] = syl + [f"{a}_{b}" for a, b in zip(syl, syl[1:])]
        return {view: list(dict.fromkeys(terms)) for view, terms in out.items()}

    def terms(self, text: str) -> list[tuple[str, str]]:
        return [(view, term) for view, terms in self.raw(text).items() for term in terms]


@dataclass
class Model:
    """What training learns: the vocabulary, its IDF, the scorer's and the decider's weights."""

    classes: list[str]
    vocab: dict[str, int]  # "view:term" → column
    view_of: np.ndarray  # column → view index
    idf: np.ndarray
    coef: np.ndarray  # columns × classes
    intercept: np.ndarray
    decider: np.ndarray  # weights of the decision features, then the intercept
    known: list[str]  # the synonym-view words the entries use (what small talk must not swallow)
    pinyin_words: dict[str, str]  # pinyin of the training texts' words → the word (Analyzer.use_pinyin)
    talk: list[str] = field(default_factory=list)  # the small-talk model's classes (NOT_TALK, TALK + kind)
    talk_coef: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # columns × talk classes
    talk_intercept: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def vector(self, terms: Iterable[tuple[str, str]], n_views: int) -> tuple[np.ndarray, np.ndarray]:
        """(columns, values) of one text: TF-IDF, each view's block scaled to unit length."""
        cols = sorted({c for c in (self.vocab.get(k, self.vocab.get(_rare_key(k))) for k in (f"{v}:{t}" for v, t in terms)) if c is not None})
        if not cols:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        idx = np.asarray(cols, dtype=np.int64)
        vals = self.idf[idx].copy()
        views = self.view_of[idx]
        norms = np.bincount(views, weights=vals * vals, minlength=n_views) ** (NORM_POWER / 2)
        return idx, vals / norms[views]

    def proba(self, idx: np.ndarray, vals: np.ndarray) -> np.ndarray:
        return _softmax(vals @ self.coef[idx] + self.intercept if len(idx) else self.intercept.copy())

    def talk_proba(self, idx: np.ndarray, vals: np.ndarray) -> np.ndarray:
        """The small-talk model's probability for each of ``talk``."""
        return _softmax(vals @ self.talk_coef[idx] + self.talk_intercept if len(idx) else self.talk_intercept.copy())


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.exp(logits - logits.max())
    return logits / logits.sum()


def _others(classes: Sequence[str]) -> np.ndarray:
    """The indices of the classes that are no entry (their names start with ~: out of domain)."""
    return np.array([i for i, c in enumerate(classes) if c.startswith("~")], dtype=np.int64)


def _is_pair(key: str) -> bool:
    """Whether a column key is a pinyin syllable pair (``pinyin:xue_ji``)."""
    return key.startswith("pinyin:") and "_" in key


def _rare_key(key: str) -> str | None:
    """The column that stands for a word of the word or synonym view the vocabulary lacks."""
    view = key.split(":", 1)[0]
    return f"{view}:{RARE}" if view in RARE_VIEWS else None


class Reading(NamedTuple):
    """The model's probabilities for one message and what it read to give them."""

    proba: np.ndarray  # one per class (Model.classes)
    terms: int  # terms of every view
    known: int  # of them, in the model's vocabulary
    words: int  # terms of the word view
    known_words: int  # of them, in the model's vocabulary
    talk: np.ndarray  # the small-talk model's probabilities (Model.talk)


def _word_counts(terms: Sequence[tuple[str, str]], idx: np.ndarray, view_of: np.ndarray, word_view: int, rare: int) -> tuple[int, int]:
    """(word-view terms of a text, how many of them the vocabulary ``idx`` was looked up in has:
    the columns of the word view but ``rare``, the one standing for the words it lacks)."""
    return sum(view == "word" for view, _ in terms), int(((view_of[idx] == word_view) & (idx != rare)).sum())


def decision_features(proba: np.ndarray, others: np.ndarray, n_terms: int, words: int, known: int) -> np.ndarray:
    """What the decider reads from a ranking, as log-odds (Platt scaling is linear in them): the top
    entry's, its lead over the runner-up (another entry, or ``others``: the classes that are no entry,
    together; out of domain), the others',
    the message's length (terms of every view), and the share of its ``words`` (the word view's
    terms) the model has seen, ``known`` (门禁卡坏了: the thing it is about is a word no training
    text used; its pinyin, made of common syllables, says nothing of that). One ranking at a time:
    this runs for every message not decided before, where numpy's per-call cost on a batch of one
    would triple it (12 µs against 34)."""
    entries = np.delete(proba, others)
    second, top = np.clip(np.sort(np.append(entries, 0.0))[-2:], 1e-6, 1 - 1e-6)
    other = min(max(float(proba[others].sum()), 1e-6), 1 - 1e-6)
    return np.array([math.log(top / (1 - top)), math.log(top / max(second, other)), math.log(other / (1 - other)), math.log1p(n_terms), math.log((1 + known) / (1 + words))])


def _phrase_patterns(phrases: Iterable[str]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Two regexes for a kind's phrases (``clean`` text): the Chinese ones, found in ``compact``
    text, and the Latin ones (letters and digits), found as whole words in ``clean`` text (hi is
    not in this, 88 not in 1880), spaces optional; a Chinese phrase is also found there typed as
    toneless pinyin (xiexie, zai ma)."""
    chinese, latin = [], []
    for phrase in phrases:
        letters = phrase.replace(" ", "")
        if phrase.isascii():
            latin.append(r" ?".join(map(re.escape, letters)))
            continue
        chinese.append(re.escape(letters))
        if len(letters) > 1 and all(_CJK_CHAR.match(c) for c in letters):
            latin.append(r" ?".join(syllable(c) for c in letters))
    by_length = lambda parts: sorted(set(parts), key=len, reverse=True)  # noqa: E731
    return (
        re.compile("|".join(by_length(chinese)) or r"(?!)"),
        re.compile(r"(?<![a-z0-9])(?:" + "|".join(by_length(latin)) + r")(?![a-z0-9])" if latin else r"(?!)"),
    )


def _digest(docs: Sequence[Doc], views: Sequence[str], analyzer_files: Sequence[Path], data_files: Sequence[Path] = ()) -> tuple[str, str]:
    """(digest of everything the model learns from: ``docs`` and the ``data_files`` it will read
    them from when it trains, digest of everything the analyzer reads)."""
    h = hashlib.sha256(json.dumps([CACHE_VERSION, CHAR_NGRAMS, list(views), jieba.__version__]).encode())
    for path in [Path(__file__), Path(__file__).with_name("text.py"), *analyzer_files]:
        h.update(path.read_bytes() if path.exists() else b"-")
    analyzer = h.hexdigest()[:32]
    h.update(json.dumps([C, WEIGHTS, FOLDS, MIN_DF, CURATED_FIELDS, PAIR_MIN_DF, MAX_ITER, WARM_ITER, NORM_POWER, CALIBRATION_FIELDS, SHARED_BY, VAGUE_SHARE, SOLVER]).encode())
    for doc in docs:
        h.update(f"{doc.label}\x00{doc.field}\x00{doc.text}\x01".encode())
    for path in [Path(__file__).with_name("examples.py"), *data_files] if data_files else []:
        h.update(path.read_bytes())
    return h.hexdigest()[:32], analyzer


_importing: threading.Thread | None = None
_importing_lock = threading.Lock()


def prepare_training() -> None:
    """Import scikit-learn in the background, once per process. The staff console calls this when it
    shows an edit form, so the draft it trains a moment later does not first wait a second for the
    import; a process that only answers students never imports it."""
    global _importing
    with _importing_lock:
        if _importing is None:
            _importing = threading.Thread(target=_import_training, name="import-sklearn", daemon=True)
            _importing.start()


def _import_training() -> None:
    import sklearn.linear_model  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import threadpoolctl  # noqa: F401


def train(docs: Sequence[Doc], features: Features, terms_key: str | None = None) -> Model:
    """Fit the scorer on every document and the decider on out-of-fold predictions.

    scikit-learn is imported here, not at module level: it takes about a second to
    import, and a process that finds its model in the cache never needs it. With
    ``terms_key`` (a digest of everything the analyzer reads), each text's terms are
    kept on disk under it, so a retrain after a staff edit analyses only what changed."""
    import sklearn.linear_model  # noqa: F401 (loads the OpenMP runtime first, so that the limit below reaches it)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # on a small shared machine, BLAS and OpenMP threads only slow the solver down
        return _fit(docs, features, terms_key)


class _TermsMemo:
    """Each text's terms kept on disk under ``key`` (a digest of everything the analyzer reads), so
    a retrain after a staff edit analyses only what changed. A text read after ``use_pinyin`` is kept
    under the pinyin keys it spells (``Analyzer.spelled``): all that the mapping changes of it."""

    def __init__(self, key: str | None):
        self.path = cache_path(f"xueji-terms-{key}.marshal") if key is not None else None
        self.kept: dict = {}
        self.used: dict = {}
        self.new = False
        if self.path is not None:
            try:
                loaded = marshal.loads(self.path.read_bytes())
                self.kept = loaded if isinstance(loaded, dict) else {}
                cache.used(self.path)
            except (OSError, ValueError, EOFError, TypeError):
                self.kept = {}

    def terms(self, key: str | tuple, read: Callable[[], dict[str, list[str]]]) -> dict[str, list[str]]:
        """The kept terms under ``key`` (a text, or a text and the pinyin keys it spells), else ``read()``."""
        found = self.kept.get(key)
        if not isinstance(found, dict):
            found, self.new = read(), True
        self.used[key] = found
        return found

    def save(self) -> None:
        """Write what this training used (and nothing older), if it read anything new."""
        if self.path is None or not self.new:
            return
        partial = self.path.with_suffix(f".{os.getpid()}.tmp")
        try:
            partial.write_bytes(marshal.dumps(self.used))
            partial.replace(self.path)
        except OSError:
            partial.unlink(missing_ok=True)
        cache.prune("xueji-terms-*.marshal", KEEP_TERMS)


def _fit(docs: Sequence[Doc], features: Features, terms_key: str | None = None) -> Model:
    from scipy import sparse
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    memo = _TermsMemo(terms_key)
    raw = [memo.terms(d.text, lambda d=d: features.raw(d.text)) for d in docs]  # as a fresh analyzer reads them
    analyzer = features.analyzer
    words = (r["word"] if "word" in r else analyzer.words(analyzer.normalise(d.text)) for d, r in zip(docs, raw))
    pinyin_words = analyzer.pinyin_of_words(w for ws in words for w in ws)
    analyzer.use_pinyin(pinyin_words)
    # Latin that spells the pinyin of a training word (biyezheng) is read as that word from now on.
    spelled = [analyzer.spelled(d.text) for d in docs]
    raw = [memo.terms((d.text, keys), lambda d=d: features.raw(d.text)) if keys else r for d, r, keys in zip(docs, raw, spelled)]
    memo.save()
    terms = [[f"{v}:{t}" for v, ts in r.items() for t in ts] for r in raw]
    seen: dict[str, int] = {}
    for ts in terms:
        for key in ts:
            seen[key] = seen.get(key, 0) + 1
    curated = {key for d, ts in zip(docs, terms) if d.field in CURATED_FIELDS for key in ts}
    kept = {k for k, n in seen.items() if (n >= MIN_DF or k in curated) and (n >= PAIR_MIN_DF or not _is_pair(k))}
    # A word no other text uses stands for every word the model will not know (门禁卡, 准考证): as
    # one term per view it learns what an unknown word says (mostly: out of domain).
    column_of = {k: k if k in kept else _rare_key(k) or k for k in seen}
    keys = sorted({c for c in column_of.values() if c in kept or c.endswith(RARE)})
    vocab = {k: i for i, k in enumerate(keys)}
    index = {k: vocab[c] for k, c in column_of.items() if c in vocab}
    view_index = {v: i for i, v in enumerate(features.views)}
    word_view = view_index.get("word", -1)
    rare_word = vocab.get(f"word:{RARE}", -1)
    view_of = np.array([view_index[k.split(":", 1)[0]] for k in keys], dtype=np.int64)
    hits = [[index[k] for k in ts if k in index] for ts in terms]
    rows = np.repeat(np.arange(len(hits)), [len(h) for h in hits])
    cols = np.fromiter((c for h in hits for c in h), dtype=np.int64, count=len(rows))
    binary = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(docs), len(keys)))
    binary.data[:] = 1.0  # a column named twice in one text (two words it does not know) is one term of it
    df = np.asarray(binary.sum(axis=0)).ravel()
    idf = np.log((1 + len(docs)) / (1 + df)) + 1.0
    x = _per_view_normalised((binary @ sparse.diags(idf)).tocsr(), view_of, len(features.views))
    labels = np.array([d.label for d in docs])
    weights = np.array([WEIGHTS[d.field] for d in docs])
    talk = np.array([d.label.startswith(TALK) for d in docs])
    scored = np.flatnonzero(~talk)  # the entry model learns from every text but small talk
    classes = sorted(set(labels[~talk]))
    others = _others(classes)
    asked = np.array([d.field in CALIBRATION_FIELDS for d in docs]) & ~talk

    # Each fold's model scores the texts it did not see. A fold starts from the previous fold's
    # weights and needs only a few iterations more; those weights saw part of its held-out third, so
    # the later folds' scores are partly in-sample. Starting every fold from a model of the texts in
    # every fold instead (no fold's score resting on that text) cost 1.5 points of hit@1 on grouped
    # cross-validation at the same wrong rate (0.6%), and more training time: the thresholds are chosen on
    # held-out sets (bench/accuracy.py --cv), which is what says how right an answer is.
    # The final model averages the folds' weights (as CalibratedClassifierCV(ensemble=True) averages
    # its folds), so every text is learned from and no extra fit is needed.
    coef = np.zeros((len(keys), len(classes)))
    intercept = np.zeros(len(classes))
    found, right = [], []
    known_column = (view_of == word_view) & (np.arange(len(keys)) != rare_word)
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=0)
    model = LogisticRegression(C=C, solver=SOLVER, max_iter=MAX_ITER, tol=1e-3, random_state=0, warm_start=True)
    for fold, (train_at, test_at) in enumerate(folds.split(scored, np.where(asked, labels, "~other")[scored])):
        train_idx, test_idx = scored[train_at], scored[test_at]
        model.max_iter = MAX_ITER if fold == 0 else WARM_ITER
        with warnings.catch_warnings():  # a fixed budget of passes is the point, not a problem
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x[train_idx], labels[train_idx], sample_weight=weights[train_idx])
        fold_coef = np.full((len(keys), len(classes)), 0.0)
        fold_intercept = np.full(len(classes), -30.0)  # a class this fold never saw
        at = [classes.index(c) for c in model.classes_]
        fold_coef[:, at] = model.coef_.T
        fold_intercept[at] = model.intercept_
        coef += fold_coef / FOLDS
        intercept += fold_intercept / FOLDS
        test_idx = test_idx[asked[test_idx]]
        seen = np.asarray(binary[train_idx].sum(axis=0)).ravel() > 0
        logits = x[test_idx] @ fold_coef + fold_intercept
        proba = np.exp(logits - logits.max(axis=1, keepdims=True))
        proba /= proba.sum(axis=1, keepdims=True)
        known = binary[test_idx] @ (seen & known_column).astype(float)
        found += [decision_features(p, others, len(terms[i]), len(raw[i].get("word", ())), k) for i, p, k in zip(test_idx, proba, known)]
        entries = proba.copy()
        entries[:, others] = -1.0
        right.extend(np.asarray(classes)[np.argmax(entries, axis=1)] == labels[test_idx])
    # A word that many entries' questions share (学历, 毕业证) says too little on its own to pick one:
    # the decider learns what such a message looks like from those words, never right when answered.
    owners: dict[str, set[str]] = {}
    for d, r in zip(docs, raw):
        if d.field in ("question", "similar"):
            for t in r.get("syn", ()):
                owners.setdefault(t, set()).add(d.label)
    n_asked = len(right)
    averaged = Model(classes, vocab, view_of, idf, coef, intercept, np.zeros(0), [], pinyin_words)
    for word in sorted(t for t, labels_of in owners.items() if len(labels_of) >= SHARED_BY):
        word_terms = features.terms(word)
        idx, vals = averaged.vector(word_terms, len(features.views))
        found.append(decision_features(averaged.proba(idx, vals), others, len(word_terms), *_word_counts(word_terms, idx, view_of, word_view, rare_word)))
        right.append(False)
    # The vague rows are a few dozen against thousands of questions: together they weigh VAGUE_SHARE.
    weight = np.ones(len(right))
    weight[n_asked:] = VAGUE_SHARE * n_asked / max(1, len(right) - n_asked)
    platt = LogisticRegression(C=10.0).fit(np.array(found), np.array(right), sample_weight=weight)
    decider = np.concatenate([platt.coef_[0], platt.intercept_])
    known = sorted({t for d, r in zip(docs, raw) if not d.label.startswith("~") and d.field != "answer" for t in r.get("syn", ())})
    # Small talk is a model of its own over the same features: each kind against every other text,
    # so its classes never take probability from the entries the decider is calibrated on.
    talk_classes, talk_coef, talk_intercept = [], np.zeros((len(keys), 0)), np.zeros(0)
    if talk.any():
        chat = LogisticRegression(C=C, solver=SOLVER, max_iter=MAX_ITER, tol=1e-3, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            # without the term for unknown words: a word the model has not seen says nothing of small talk
            # (so asdfgh is not a mistyped thanks just because thx and 3q are rare too)
            known_only = x @ sparse.diags((~np.char.endswith(np.array(keys, dtype=str), RARE)).astype(float))
            chat.fit(known_only, np.where(talk, labels, NOT_TALK), sample_weight=weights)
        talk_classes, talk_coef, talk_intercept = [str(c) for c in chat.classes_], chat.coef_.T, chat.intercept_
    return Model(classes, vocab, view_of, idf, np.ascontiguousarray(coef), intercept, decider, known, pinyin_words,
                 talk_classes, np.ascontiguousarray(talk_coef), talk_intercept)


def _per_view_normalised(x, view_of: np.ndarray, n_views: int):
    """Each row's block of each view divided by its length to the power NORM_POWER (as ``Model.vector`` does)."""
    from scipy import sparse

    x = x.tocoo()
    norms = np.zeros((x.shape[0], n_views))
    np.add.at(norms, (x.row, view_of[x.col]), x.data**2)
    norms = norms ** (NORM_POWER / 2)
    return sparse.csr_matrix((x.data / norms[x.row, view_of[x.col]], (x.row, x.col)), shape=x.shape)


def _cache_path(digest: str) -> Path:
    return cache_path(f"xueji-matcher-{digest}.npz")


@contextlib.contextmanager
def _training_turn() -> Iterator[None]:
    """One process at a time trains on this host; the others wait, then look in the cache again.

    Every gunicorn worker builds its matcher at start and after each staff edit. On a
    fresh 2-core host (no cache yet) two workers training at once took 12.7 s to a first
    answer, one training while the other waits 9.2–10.8 s (``bench/load.py``'s cold
    start with the caches removed). One lock file for every model, so pruning never
    removes a lock somebody waits on; it is the kernel's (``flock``), so a process that
    dies while training releases it.
    """
    try:
        handle = open(cache_path("xueji-training.lock"), "a")
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _load_cached(digest: str) -> Model | None:
    try:
        with np.load(_cache_path(digest), allow_pickle=False) as data:
            keys = [str(k) for k in data["keys"]]
            model = Model(
                classes=[str(c) for c in data["classes"]],
                vocab={k: i for i, k in enumerate(keys)},
                view_of=data["view_of"],
                idf=data["idf"],
                coef=np.ascontiguousarray(data["coef"]),
                intercept=data["intercept"],
                decider=data["decider"],
                known=[str(k) for k in data["known"]],
                pinyin_words=dict(zip((str(k) for k in data["pinyin_keys"]), (str(w) for w in data["pinyin_values"]))),
                talk=[str(c) for c in data["talk"]],
                talk_coef=np.ascontiguousarray(data["talk_coef"]),
                talk_intercept=data["talk_intercept"],
            )
    except (OSError, KeyError, ValueError):
        return None
    cache.used(_cache_path(digest))
    return model


def _save_cached(digest: str, model: Model) -> None:
    path = _cache_path(digest)
    partial = path.with_suffix(f".{id(model)}.tmp.npz")
    try:
        np.savez(
            partial,
            keys=np.array(sorted(model.vocab, key=model.vocab.__getitem__)),
            classes=np.array(model.classes),
            view_of=model.view_of,
            idf=model.idf,
            coef=model.coef,
            intercept=model.intercept,
            decider=model.decider,
            known=np.array(model.known),
            pinyin_keys=np.array(list(model.pinyin_words)),
            pinyin_values=np.array(list(model.pinyin_words.values())),
            talk=np.array(model.talk, dtype=str),
            talk_coef=model.talk_coef,
            talk_intercept=model.talk_intercept,
        )
        partial.replace(path)
    except OSError:
        partial.unlink(missing_ok=True)
    cache.prune(_cache_path("?" * len(digest)).name, KEEP_MODELS)  # whole digests: another process's partial file is no model


class Matcher:
    """The decision for each message, from a model trained on the knowledge base when this is built."""

    def __init__(
        self,
        kb: KnowledgeBase,
        lexicon_dir: Path | None = None,
        rules_path: Path | None = None,
        *,
        sets: Sequence[QuestionSet] | None = None,
        views: Sequence[str] = VIEWS,
        cache: bool = True,
        memo: int = MEMO,
    ):
        folder = lexicon_dir or LEXICON_DIR
        self.kb = kb
        self.lexicon = Lexicon.load(folder)
        self.rules = load_rules(rules_path or RULES_PATH, kb)
        self.analyzer = Analyzer(self.lexicon)
        self.features = Features(self.analyzer, views)
        self._exact = {compact(k): r for r in reversed(self.rules) if r.match == "exact" for k in r.keywords}
        self._contains = sorted(
            ((compact(k), r) for r in self.rules if r.match == "contains" for k in r.keywords), key=lambda pair: -len(pair[0])
        )
        self._hints = sorted(
            ((compact(h), key) for key, aud in kb.profile.audiences.items() for h in aud.hints if compact(h)),
            key=lambda pair: -len(pair[0]),
        )
        self._talk = {kind: _phrase_patterns(phrases) for kind, phrases in self.lexicon.smalltalk.items()}
        self._emoji = self.lexicon.emoji
        ood = load_out_of_domain(folder)
        lexicon_files = sorted(folder.glob("*")) if folder.is_dir() else []
        # The shipped sets are digested as files: parsing them is only needed to train.
        shipped = [path for path in TRAINING_SETS if path.exists()] if sets is None else []
        docs = documents(kb, ood, [] if sets is None else sets, self.lexicon.smalltalk)
        digest, terms_key = _digest(docs, self.features.views, lexicon_files, shipped)
        model = _load_cached(digest) if cache else None
        self.trained = False  # whether this build trained its model (else another process's was loaded)
        if model is None:
            with _training_turn() if cache else contextlib.nullcontext():
                model = _load_cached(digest) if cache else None  # trained by another process while this one waited
                if model is None:
                    if sets is None:
                        docs = documents(kb, ood, training_sets(), self.lexicon.smalltalk)
                    model = train(docs, self.features, terms_key if cache else None)
                    self.trained = True
                    if cache:
                        _save_cached(digest, model)
        self.model = model
        self.digest = digest  # of everything the model learned from: the same data, the same digest, in any process
        self.analyzer.use_pinyin(model.pinyin_words)
        self._others = _others(model.classes)
        self._talk_kinds = [(i, c[len(TALK):]) for i, c in enumerate(model.talk) if c.startswith(TALK)]
        self._known = frozenset(model.known)
        self._word_view = self.features.views.index("word") if "word" in self.features.views else -1
        self._rare_word = model.vocab.get(f"word:{RARE}", -1)
        # A matcher never changes once built (a reload builds a new one), so a decision can be kept.
        self._memo = lru_cache(maxsize=max(0, memo))(self._decide)

    def audience(self, question: str) -> str | None:
        """The audience named by a profile hint in the question (longest hint wins), else None."""
        text = compact(question)
        for hint, key in self._hints:
            if hint in text:
                return key
        return None

    def probabilities(self, question: str) -> Reading:
        """The model's probability for every class (``model.classes``) and what it read to say so."""
        terms = self.features.terms(question)
        idx, vals = self.model.vector(terms, len(self.features.views))
        counts = _word_counts(terms, idx, self.model.view_of, self._word_view, self._rare_word)
        return Reading(self.model.proba(idx, vals), len(terms), len(idx), *counts, self.model.talk_proba(idx, vals))

    def rank(self, question: str) -> list[tuple[str, float]]:
        """The entries for ``question`` with the model's probability, best first (out of domain left out)."""
        proba = self.probabilities(question).proba
        ranked = [(str(c), round(float(p), 4)) for c, p in zip(self.model.classes, proba) if not c.startswith("~")]
        return sorted(ranked, key=lambda pair: (-pair[1], pair[0]))

    def confidence(self, question: str) -> tuple[float, float, list[tuple[str, float]]]:
        """(calibrated probability the top entry is right, probability of the domain, the ranking)."""
        return self._decided(self.probabilities(question))

    def _decided(self, reading: Reading) -> tuple[float, float, list[tuple[str, float]]]:
        proba = reading.proba
        ranked = sorted(((str(c), float(p)) for c, p in zip(self.model.classes, proba) if not c.startswith("~")), key=lambda pair: (-pair[1], pair[0]))
        z = float(decision_features(proba, self._others, reading.terms, reading.words, reading.known_words) @ self.model.decider[:-1] + self.model.decider[-1])
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z)))), 1.0 - float(proba[self._others].sum()), ranked

    def _chat(self, reading: Reading) -> tuple[str, float] | None:
        """The small-talk kind the small-talk model holds at ``TALK_AT`` or above, with its probability."""
        if not self._talk_kinds:
            return None
        likely, kind = max((float(reading.talk[i]), kind) for i, kind in self._talk_kinds)
        return (kind, round(likely, 4)) if likely >= TALK_AT else None

    def _knowledge(self, question: str, audience: str | None, talk: bool = True) -> Match:
        """Answer a likely-right top entry; else, with ``talk``, serve the small-talk kind the small-talk
        model holds likely; else offer the likeliest few to a question likely in the domain, or fall back."""
        reading = self.probabilities(question)
        if not reading.known:
            return Match("fallback", None, (), 0.0, audience)  # not one term the model knows: no evidence at all
        sure, domain, ranked = self._decided(reading)
        ids = tuple(entry_id for entry_id, _ in ranked[:MAX_CHOICES])
        score = round(sure, 4)
        if sure >= ANSWER_AT:
            return Match("answer", ids[0], ids, score, audience)
        chat = self._chat(reading) if talk else None
        if chat is not None:
            return Match(chat[0], None, (), chat[1], audience)
        close = tuple(entry_id for entry_id, p in ranked[:MAX_CHOICES] if p >= CLOSE * ranked[0][1])
        if domain >= CLARIFY_AT and len(close) >= 2:
            return Match("clarify", None, close, score, audience)
        return Match("fallback", None, ids, score, audience)

    def _rule(self, text: str) -> Rule | None:
        """The exact rule for ``text``, else the contains rule with the longest keyword found in it."""
        if text in self._exact:
            return self._exact[text]
        return next((rule for key, rule in self._contains if key in text), None)

    def _small_talk(self, question: str) -> tuple[str | None, str]:
        """The small-talk kind found in ``question`` and its ``clean`` text without any small talk.

        A greeting only counts when nothing else is said. Otherwise the kind with the longest
        phrase wins, the first listed on a tie: 谢谢你的帮助 is thanks, not a call for help, and
        换个老师 asks for a human whatever the 老师 in it. A phrase of symbols (👋) counts as one
        character. A short message of Chinese that no phrase is in, but that sounds like one
        (泥嚎, 蟹蟹), is that phrase."""
        text = clean(question)
        has_latin = bool(_LATIN.search(text))
        best, kind = 0, next((k for e, k in self._emoji.items() if e in question), None)
        if kind is not None and kind != "greeting":
            best = 1
        for name, (chinese, latin) in self._talk.items():
            found = chinese.findall(text.replace(" ", "")) + (latin.findall(text) if has_latin else [])
            longest = max((len(f.replace(" ", "")) for f in found), default=0)
            if longest and name != "greeting" and longest > best:
                best, kind = longest, name
            elif longest and kind is None and name == "greeting":
                kind = name
        if kind is None and 1 < len(text) <= SOUNDS_LIKE_CHARS and all(_CJK_CHAR.match(c) for c in text):
            sounds = " ".join(syllable(c) for c in text)  # 泥嚎 sounds like 你好: the whole message, mistyped
            kind = next((name for name, (_, latin) in self._talk.items() if latin.fullmatch(sounds)), None)
            if kind is not None:
                return kind, ""
        if has_latin:
            for _, latin in self._talk.values():
                text = latin.sub(" ", text)
        for chinese, _ in self._talk.values():
            text = " ".join(chinese.sub(" ", part) for part in text.split())
        return kind, text

    def match(self, question: str) -> Match:
        """The one decision for a message (kept for the next time the same text is sent). Only the
        first ``MAX_CHARS * 2`` characters are read (as ``clean`` reads them), so only they are kept."""
        return self._memo(question[: MAX_CHARS * 2])

    def _decide(self, question: str) -> Match:
        """The one decision for a message.

        Small talk wins when what is left without its phrases names no word the entries use
        (a lone 人 or 号 left over is no question); a greeting only when nothing of two
        characters or more is left at all (老师好 食堂几点开门 is a question, and gets the
        fallback, unless the small-talk model takes what is left for small talk too). When something is left,
        the knowledge base is asked; unless it has a clear answer, a request for a person or for
        help is served as such (有没有真人老师在线), and so is a thanks it cannot place.
        """
        text = compact(question)
        audience = self.audience(question)
        rule = self._rule(text) if text else None
        if rule is not None:
            return Match("rule", rule.entry, (rule.entry,) if rule.entry else (), 1.0, audience, rule.text, rule.reply)
        kind, rest = self._small_talk(question)
        left = [t for t in self.analyzer.tokens(rest) if len(t) > 1 and (kind == "greeting" or t in self._known)]
        if kind is not None and not left:
            return Match(kind, None, (), 1.0, audience)
        if kind == "greeting":  # what follows the greeting decides: more small talk (老师好 我想找您本人), or a question
            chat = self._chat(self.probabilities(rest))
            if chat is not None:
                return Match(chat[0], None, (), chat[1], audience)
        decision = self._knowledge(question, audience, talk=kind is None)
        if (decision.action == "fallback" and kind == "thanks") or (decision.action != "answer" and kind in ("human", "help")):
            return Match(kind, None, (), 1.0, audience)
        return decision
