"""Decide what to do with one student message: rule, small talk, answer, clarify or fall back.

Order matters: staff keyword rules (``knowledge/rules.yaml``) win over everything,
then small talk, then the knowledge base. Knowledge matching compares the
message's canonical tokens (``knowledge.text``) with every entry's question,
similar questions and keywords:

* coverage: how much of the message the entry's words explain. Words weigh by
  IDF over entries; a word no entry uses weighs by its rarity in general Chinese,
  so a question about something else (转专业) does not ride on shared verbs;
* dice: weighted overlap with the entry's closest phrase (question or similar);
* anchored: how much of what the entry is *about* (words in many of its
  phrases) the message mentions;
* keyworded: the share of the message made up by one of the entry's keywords.

The weighted mix is a confidence in 0..1; a clear winner is answered, a few
close ones are offered as a choice, and a weak best match falls back.

An answer must be about what the question is about, its thing and its topic;
scores alone are not trusted for that. The rules, each from ``objects.txt`` data
or from the entries themselves:

1. Things. An entry is a candidate only if it mentions one of the things
   (``objects.txt``: 证件, 材料, 手续, 系统) the message names, so 学生证丢了 never
   gets the 毕业证 answer; a message naming a thing no entry mentions (选课, 借书证,
   any other X证书 such as 荣誉证书) falls back.
2. Qualified things. A noun right before a general thing (``+`` lines: 学籍, 证明,
   电话, 密码) makes it another thing: 高中学籍, 辅导员电话, 党员证明, 学习网密码 are
   not ours, and fall back when no entry uses the noun. Verbs, numbers, time
   words (补办, 一张, 去年; jieba's part-of-speech tags), audiences (本科) and
   describing words (``-`` lines: 纸质, 函授, 妹妹) do not qualify. A known noun that
   tells another entry (教务系统密码, 武装部电话) keeps entries that never name it
   from being answered outright.
3. The entry's thing. An entry about one thing (half its phrases name 毕业证) is
   not answered outright for a message naming only other things, general ones
   included (身份证丢了, 档案丢了, 学位授予条件 are no 毕业证 questions).
4. An unknown topic. When a word no entry uses is rare and weighs a large share
   of the message (复读, 奖状, 社团), it is likely what the message is about; an
   entry is then not answered outright unless the message mentions its thing, or
   for an entry about no thing a word of its core (复读保留学籍 names no 入伍).
   Circumstances of an in-domain question (搬家把毕业证弄丢了) leave its
   thing and core mentioned, so it is still answered.

Not answered outright means offered in a clarify list when several entries are
close to the top, else the message falls back.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .base import KnowledgeBase
from .text import LEXICON_DIR, Analyzer, Lexicon, Parsed, compact

RULES_PATH = Path(__file__).resolve().parent / "rules.yaml"

# Tuned on half of the dev topics, checked on the other half (see bench/accuracy.py --half).
ANSWER_AT = 0.40  # confidence needed to answer ...
MARGIN = 0.05  # ... when the runner-up trails by at least this much
CLARIFY_AT = 0.30  # below this, nothing fits: fall back
LEAD = 1.5  # in a long question, a top score this many times the runner-up's is answered too ...
LONG = 5  # ... long meaning at least this many content words
INFO_FLOOR = 2.0  # a one-word question weighing less than this (毕业证, 查不到; lone characters aside) is too vague to answer
CLOSE = 0.10  # a clarify list holds the entries within this of the top (any plausible one for a vague question)
MAX_CHOICES = 4
UNKNOWN_WEIGHT = 3.0  # weight of a rare word no entry uses: it is what the question is about
SINGLE_CHAR = 0.4  # single characters and numbers say little on their own
ANCHOR_SHARE = 0.34  # a word in this share of an entry's phrases is what the entry is about
PRIMARY_SHARE = 0.5  # a thing (objects.txt) named in this share of an entry's phrases is what it is about
WEIGHTS = (0.4, 0.3, 0.2, 0.1)  # coverage, dice, anchored, keyworded
TOPIC_WEIGHT = 1.4  # a word no entry uses weighing this much (rarer than ~450 per jieba's count) ...
TOPIC_SHARE = 0.3  # ... and this share of the question's weight may be what the question is about
CORE_SHARE = 0.5  # an entry's core: the things it is about and its anchors weighing this share of its top anchor
QUALIFIER_FREQ = 10_000  # a noun before a thing qualifies it unless it is this common (原因, 学生, 国家)


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
        rules = RulesFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {}).rules
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


@dataclass(frozen=True)
class _Indexed:
    """One entry, tokenised and weighted once at start-up."""

    phrase_sizes: tuple[float, ...]  # question and similar: total weight of each
    phrase_postings: dict[str, tuple[int, ...]]  # word → the phrases holding it
    keywords: tuple[frozenset[str], ...]
    strength: dict[str, float]  # how central each of its words is: 1 in a keyword or in half its phrases
    anchors: dict[str, float]  # what it is about: words in many of its phrases, weighted by share and IDF
    anchor_total: float
    primary: frozenset[str]  # the things it is about (named in PRIMARY_SHARE of its phrases)
    core: frozenset[str]  # its things and its main anchors: what a question must mention to be about it
    keyword_objects: frozenset[str]  # the things its keywords name


def _confidence(coverage: float, dice: float, anchored: float, keyworded: float) -> float:
    return sum(w * f for w, f in zip(WEIGHTS, (coverage, dice, anchored, keyworded)))


class Matcher:
    """The decision for each message; the index is built once, in well under a second."""

    def __init__(self, kb: KnowledgeBase, lexicon_dir: Path | None = None, rules_path: Path | None = None):
        self.kb = kb
        self.lexicon = Lexicon.load(lexicon_dir or LEXICON_DIR)
        self.rules = load_rules(rules_path or RULES_PATH, kb)
        self.analyzer = Analyzer(self.lexicon)
        self._exact = {compact(k): r for r in reversed(self.rules) if r.match == "exact" for k in r.keywords}
        self._contains = sorted(
            ((compact(k), r) for r in self.rules if r.match == "contains" for k in r.keywords), key=lambda pair: -len(pair[0])
        )
        self._suffixes = self.lexicon.object_suffixes
        self._audience_words = {compact(h) for aud in kb.profile.audiences.values() for h in aud.hints}
        self._hints = sorted(
            ((compact(h), key) for key, aud in kb.profile.audiences.items() for h in aud.hints if compact(h)),
            key=lambda pair: -len(pair[0]),
        )
        self._talk = {
            kind: re.compile("|".join(rf"(?<![a-z]){re.escape(p)}(?![a-z])" if p.isascii() else re.escape(p) for p in phrases))
            for kind, phrases in self.lexicon.smalltalk.items()
        }
        tokenised = {
            entry.id: (
                [frozenset(self.analyzer.tokens(p)) for p in [entry.question, *entry.similar]],
                [k for k in (frozenset(self.analyzer.tokens(k)) for k in entry.keywords) if k],
            )
            for entry in kb.entries.values()
        }
        self._postings: dict[str, list[str]] = {}
        for entry_id, (phrases, keywords) in tokenised.items():
            for token in set().union(*phrases, *keywords):
                self._postings.setdefault(token, []).append(entry_id)
        n = len(tokenised)
        self._idf = {t: math.log(1 + (n - len(ids) + 0.5) / (len(ids) + 0.5)) for t, ids in self._postings.items()}
        self._index = {entry_id: self._indexed(phrases, keywords) for entry_id, (phrases, keywords) in tokenised.items()}
        # words that say which entry a question is about: what an entry is about, or one of its keywords
        self._telling = {t for item in self._index.values() for t in item.anchors} | {
            next(iter(k)) for item in self._index.values() for k in item.keywords if len(k) == 1
        }

    def _indexed(self, phrases: list[frozenset[str]], keywords: list[frozenset[str]]) -> _Indexed:
        share = {t: sum(t in p for p in phrases) / len(phrases) for t in set().union(*phrases)}
        strength = {t: 0.5 + 0.5 * min(1.0, 2 * s) for t, s in share.items()} | dict.fromkeys(set().union(*keywords), 1.0)
        bar = min(ANCHOR_SHARE, max(share.values(), default=0.0))
        anchors = {t: s * self._weight(t) for t, s in share.items() if s >= bar}
        objects = self.lexicon.objects
        primary = frozenset(t for t, s in share.items() if t in objects and s >= PRIMARY_SHARE)
        top = max(anchors.values(), default=0.0)
        return _Indexed(
            phrase_sizes=tuple(sum(self._weight(t) for t in p) for p in phrases),
            phrase_postings={t: tuple(i for i, p in enumerate(phrases) if t in p) for t in share},
            keywords=tuple(keywords),
            strength=strength,
            anchors=anchors,
            anchor_total=sum(anchors.values()),
            primary=primary,
            core=primary | {t for t, w in anchors.items() if w >= CORE_SHARE * top},
            keyword_objects=frozenset(t for k in keywords for t in k if t in objects),
        )

    def _weight(self, token: str) -> float:
        """IDF over entries. A word no entry uses weighs by its rarity in general Chinese: 学生证 or
        转专业 say what the question is about, 朋友 or 单位 are circumstance. Lone characters and
        numbers weigh little."""
        weight = self._idf.get(token)
        if weight is None:
            weight = UNKNOWN_WEIGHT * max(0.2, 1 - math.log10(self.analyzer.frequency(token) + 1) / 5)
        if len(token) == 1 or token.isdigit():
            weight *= SINGLE_CHAR
        return weight

    def audience(self, question: str) -> str | None:
        """The audience named by a profile hint in the question (longest hint wins), else None."""
        text = compact(question)
        for hint, key in self._hints:
            if hint in text:
                return key
        return None

    def features(self, question: str) -> dict[str, tuple[float, float, float, float]]:
        """Per candidate entry: (coverage, dice, anchored, keyworded), each 0..1 (the debugging view)."""
        return self._features(self.analyzer.parse(question))

    def _qualifiers(self, parsed: Parsed) -> set[str] | None:
        """The nouns that qualify the question's things (研招网 in 研招网手机号, 武装部 in 武装部电话)
        and tell which entry they belong to, or None if a noun no entry uses, nor any part of it
        (手机短信 is 手机 and 短信), qualifies a general thing (高中学籍, 辅导员电话, 党员证明): the
        question is then about a thing no entry covers.

        Nouns right before a thing qualify it unless they name an audience (本科), a general
        thing themselves (学籍学历), a describing word (纸质, 函授, 妹妹; ``objects.txt``) or are
        very common words (原因, 国家). A known noun tells an entry if it is what the entry is
        about or one of its keywords; one no entry uses only counts before a general thing
        (before 毕业证, 手机号 it is too often circumstance)."""
        found: set[str] = set()
        for q, thing in parsed.pairs:
            if (
                q in self.lexicon.heads
                or q in self.lexicon.describing
                or q in self._audience_words
                or self.analyzer.frequency(q) > QUALIFIER_FREQ
            ):
                continue
            parts = [q] if q in self._idf else self.analyzer.parts(q)
            if parts and all(p in self._idf for p in parts):
                found.update(p for p in parts if p in self._telling)
            elif thing in self.lexicon.heads:
                return None
        return found

    def _objects(self, tokens: list[str]) -> set[str]:
        """The things (objects.txt, or a word no entry uses ending in a suffix like 证) the tokens name."""
        return {t for t in tokens if t in self.lexicon.objects or (t not in self._idf and t.endswith(self._suffixes))}

    def _off_object(self, entry_id: str, objects: set[str], qualifiers: set[str] | None = frozenset()) -> bool:
        """True if the entry is about things the message does not name, and names none of the
        message's things in its keywords, or if it never names a noun that qualifies one of the
        message's things (研招网 in 研招网手机号): it may be offered, never answered outright."""
        item = self._index[entry_id]
        if qualifiers is None or not qualifiers <= item.strength.keys():
            return True
        return bool(objects and item.primary) and item.primary.isdisjoint(objects) and item.keyword_objects.isdisjoint(objects)

    def _topic(self, tokens: list[str], weights: dict[str, float]) -> bool:
        """True if a word no entry uses is rare enough to be what the question is about (复读,
        奖状) and weighs TOPIC_SHARE of the whole question; describing words (妹妹, 函授) and
        audiences (硕士) are not topics."""
        total = sum(weights.values()) or 1.0
        return any(
            t not in self._idf
            and len(t) > 1
            and t not in self.lexicon.describing
            and t not in self._audience_words
            and weights[t] >= TOPIC_WEIGHT
            and weights[t] >= TOPIC_SHARE * total
            for t in tokens
        )

    def _off_topic(self, entry_id: str, tokens: list[str]) -> bool:
        """True if the question's topic may be a word no entry uses while it does not mention
        what the entry is about: the thing it is about (奖状丢了 names no 毕业证) or, for an entry
        about no thing, any word of its core (复读保留学籍 names no 入伍). The unknown word then
        likely names what the question is about. It may be offered, never answered outright."""
        weights = {t: self._weight(t) for t in tokens}
        if not self._topic(tokens, weights):
            return False
        item = self._index[entry_id]

        def mentioned(word: str) -> bool:
            return any(word in t for t in tokens)

        if item.primary:
            return not any(mentioned(t) for t in item.primary)
        return not any(mentioned(t) for t in item.core)

    def _features(self, parsed: Parsed) -> dict[str, tuple[float, float, float, float]]:
        """Candidates share a word with the question and, if it names things (证件, 手续), one of those.

        A question naming a thing no entry names (选课, 借书证, 高中毕业证) has no candidates at all.
        """
        tokens = parsed.tokens
        objects = self._objects(tokens)
        if not objects <= self._idf.keys() or self._qualifiers(parsed) is None:
            return {}
        weights = {t: self._weight(t) for t in tokens}
        total = sum(weights.values())
        found = {}
        for entry_id in {e for t in tokens for e in self._postings.get(t, ())}:
            item = self._index[entry_id]
            if objects and objects.isdisjoint(item.strength):
                continue
            coverage = sum(w * item.strength.get(t, 0.0) for t, w in weights.items()) / total
            overlap: dict[int, float] = {}
            for t, w in weights.items():
                for i in item.phrase_postings.get(t, ()):
                    overlap[i] = overlap.get(i, 0.0) + w
            dice = max((2 * o / (total + item.phrase_sizes[i]) for i, o in overlap.items()), default=0.0)
            anchored = sum(w for a, w in item.anchors.items() if a in weights) / (item.anchor_total or 1.0)
            keyworded = max((sum(weights[t] for t in k) for k in item.keywords if k <= weights.keys()), default=0.0) / total
            found[entry_id] = (coverage, dice, anchored, keyworded)
        return found

    def _ranked(self, parsed: Parsed) -> list[tuple[str, float]]:
        scores = [(entry_id, round(_confidence(*f), 4)) for entry_id, f in self._features(parsed).items()]
        return sorted(scores, key=lambda pair: (-pair[1], pair[0]))

    def rank(self, question: str) -> list[tuple[str, float]]:
        """The candidate entries for ``question`` with their confidence, best first (also the debugging view)."""
        return self._ranked(self.analyzer.parse(question))

    def _rule(self, text: str) -> Rule | None:
        """The exact rule for ``text``, else the contains rule with the longest keyword found in it."""
        if text in self._exact:
            return self._exact[text]
        return next((rule for key, rule in self._contains if key in text), None)

    def _small_talk(self, text: str) -> tuple[str | None, str]:
        """The small-talk kind found in ``text`` and the text without any small talk.

        A greeting only counts when nothing else is said. Otherwise the kind with the longest
        phrase wins, the first listed on a tie: 谢谢你的帮助 is thanks, not a call for help, and
        换个老师 asks for a human whatever the 老师 in it."""
        best, kind = 0, None
        for name, pattern in self._talk.items():
            longest = max((len(found) for found in pattern.findall(text)), default=0)
            if longest and name != "greeting" and longest > best:
                best, kind = longest, name
            elif longest and kind is None and name == "greeting":
                kind = name
        for pattern in self._talk.values():
            text = pattern.sub(" ", text)
        return kind, text

    def _knowledge(self, question: str, audience: str | None) -> Match:
        """Answer a clear winner, offer close candidates, or fall back.

        A question that says too little (毕业证) is not answered outright: its likely
        entries are offered instead. A long question's confidence is diluted by its
        context words, so there a clear lead over the runner-up is enough. Without
        a clear winner, the entries close to the top are offered; if only one is,
        it is too doubtful to answer and the question falls back.
        """
        parsed = self.analyzer.parse(question)
        words, tokens = parsed.words, parsed.tokens
        ranked = self._ranked(parsed)
        ids = tuple(entry_id for entry_id, _ in ranked)
        top = ranked[0][1] if ranked else 0.0
        second = ranked[1][1] if len(ranked) > 1 else 0.0
        if top < CLARIFY_AT:
            return Match("fallback", None, ids[:MAX_CHOICES], top, audience)
        informative = sum(len(w) > 1 for w in words) > 1 or sum(self._weight(w) for w in words) >= INFO_FLOOR
        leads = top - second >= MARGIN if top >= ANSWER_AT else len(words) >= LONG and top >= LEAD * second
        named = self._objects(tokens) | (self.lexicon.heads & set(tokens))
        leads = leads and not self._off_object(ids[0], named, self._qualifiers(parsed))
        leads = leads and not self._off_topic(ids[0], tokens)
        if informative and leads:
            return Match("answer", ids[0], ids[:MAX_CHOICES], top, audience)
        bar = top - CLOSE if informative else CLARIFY_AT
        close = tuple(entry_id for entry_id, score in ranked if score >= bar)
        if len(close) < 2:
            return Match("fallback", None, ids[:MAX_CHOICES], top, audience)
        return Match("clarify", None, close[:MAX_CHOICES], top, audience)

    def match(self, question: str) -> Match:
        """The one decision for a message.

        Small talk wins when what is left without its phrases names no entry word of two
        characters or more (a lone 人 or 号 left over is no question); a greeting only when
        nothing of two characters or more is left at all (老师好 食堂几点开门 is a question,
        and gets the fallback). When something is left, the
        knowledge base is asked; unless it has a clear answer, a request for a person or for
        help is served as such (有没有真人老师在线), and so is a thanks it cannot place; a
        greeting in front of an unanswerable question gets the fallback, which says so.
        """
        text = compact(question)
        audience = self.audience(question)
        rule = self._rule(text) if text else None
        if rule is not None:
            return Match("rule", rule.entry, (rule.entry,) if rule.entry else (), 1.0, audience, rule.text, rule.reply)
        kind, rest = self._small_talk(text)
        left = [t for t in self.analyzer.tokens(rest) if len(t) > 1 and (kind == "greeting" or t in self._idf)]
        if kind is not None and not left:
            return Match(kind, None, (), 1.0, audience)
        decision = self._knowledge(question, audience)
        if (decision.action == "fallback" and kind == "thanks") or (decision.action != "answer" and kind in ("human", "help")):
            return Match(kind, None, (), 1.0, audience)
        return decision
