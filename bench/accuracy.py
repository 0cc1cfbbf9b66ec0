"""Accuracy, calibration, speed and memory of the matcher.

    .venv/bin/python bench/accuracy.py [SET_FILE ...]      # score the shipped matcher on each set
    .venv/bin/python bench/accuracy.py --cv [--add FILE]    # cross-validated: each labelled set held out in turn
    .venv/bin/python bench/accuracy.py --ablate             # CV figures with each view, field and rule removed
    .venv/bin/python bench/accuracy.py --scale              # latency, training time, memory at 1x, 10x, 100x entries

A set file has ``in_domain`` (q, expect), ``out_of_domain`` (q) and ``smalltalk``
(q, kind) lists, or top-level sections holding them (``tune:``/``holdout:``),
each scored as a set of its own; extra keys are ignored, except that a
per-voice breakdown is printed when items have ``voice``.

The shipped matcher learns from the labelled sets in ``bench/`` (see
``knowledge/examples.py``), so scoring them directly measures the fit, not
generalisation: ``--cv`` is the honest figure. It groups by set (GroupKFold
with one set per group: dev, fresh tune, fresh holdout, unseen, and every
``--add`` file): the matcher for each fold trains on the entries, the negative
examples and the *other* sets, and scores the held-out one.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from knowledge import matcher as matcher_module  # noqa: E402
from knowledge import text as text_module  # noqa: E402
from knowledge.base import KnowledgeBase, KnowledgeError, check, load  # noqa: E402
from knowledge.examples import TRAINING_SETS, QuestionSet, read_sets  # noqa: E402
from knowledge.matcher import Matcher  # noqa: E402

BUCKETS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0001)
ANSWERED = ("answer", "rule")
SMALL_TALK = ("greeting", "thanks", "human", "help")


def _knowledge_base() -> KnowledgeBase:
    try:
        return load()
    except KnowledgeError as exc:
        kb, _ = check(catalogue=None)
        if kb is None:
            raise
        print(f"WARNING: knowledge base has {len(exc.problems)} problem(s); benchmarking what loads ({len(kb.entries)} entries)")
        return kb


@dataclass
class Tally:
    """Counts over scored questions; ``scores`` keeps (confidence, right) of every answer for the reliability table."""

    n: int = 0
    hit: int = 0
    resolved: int = 0
    wrong: int = 0
    clarify: int = 0
    fallback: int = 0
    ood: int = 0
    ood_answered: int = 0
    ood_clarified: int = 0
    chatted: int = 0  # questions (in the domain or out of it) taken for small talk
    talk: int = 0
    talk_ok: int = 0
    scores: list[tuple[float, bool]] = field(default_factory=list)
    sweep: list[tuple[float, bool, bool]] = field(default_factory=list)  # (confidence, top entry right, in domain)
    misses: list[str] = field(default_factory=list)

    def add(self, other: "Tally") -> None:
        for name in ("n", "hit", "resolved", "wrong", "clarify", "fallback", "ood", "ood_answered", "ood_clarified", "chatted", "talk", "talk_ok"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.scores += other.scores
        self.sweep += other.sweep
        self.misses += other.misses

    def figures(self) -> dict[str, float]:
        share = lambda a, b: a / b if b else 0.0  # noqa: E731
        return {
            "hit@1": share(self.hit, self.n),
            "resolved": share(self.resolved, self.n),
            "wrong": share(self.wrong, self.n),
            "clarify": share(self.clarify, self.n),
            "fallback": share(self.fallback, self.n),
            "ood answered": share(self.ood_answered, self.ood),
            "small talk": share(self.talk_ok, self.talk),
        }


def score_items(matcher: Matcher, qs: QuestionSet, voice: str | None = None) -> Tally:
    keep = (lambda i: i.voice == voice) if voice is not None else (lambda i: True)
    t = Tally()
    for item in filter(keep, qs.in_domain):
        m = matcher.match(item.q)
        answered = m.action in ANSWERED and m.entry_id is not None
        hit = answered and m.entry_id in item.expect
        t.n += 1
        t.hit += hit
        t.wrong += answered and not hit
        t.clarify += m.action == "clarify"
        t.fallback += not answered and m.action != "clarify"
        t.resolved += hit or (m.action == "clarify" and any(c in item.expect for c in m.candidates))
        t.chatted += m.action in SMALL_TALK
        if answered:
            t.scores.append((m.score, hit))
        if m.action in ("answer", "clarify", "fallback") and m.candidates:
            t.sweep.append((m.score, m.candidates[0] in item.expect, True))
        if not hit:
            t.misses.append(f"{item.q}\n    expected {'/'.join(item.expect)}; got {m.action} {m.entry_id or ','.join(m.candidates)} ({m.score:.2f})")
    for item in filter(keep, qs.out_of_domain):
        m = matcher.match(item.q)
        t.ood += 1
        answered = m.action in ANSWERED and m.entry_id is not None
        t.ood_answered += answered
        t.ood_clarified += m.action == "clarify"
        t.chatted += m.action in SMALL_TALK
        if answered:
            t.scores.append((m.score, False))
        if m.action in ("answer", "clarify", "fallback") and m.candidates:
            t.sweep.append((m.score, False, False))
        if answered or m.action == "clarify":
            t.misses.append(f"{item.q}\n    expected fallback; got {m.action} {m.entry_id or ','.join(m.candidates)} ({m.score:.2f})")
    for item in filter(keep, qs.smalltalk):
        m = matcher.match(item.q)
        t.talk += 1
        right = m.action == item.kind if item.kind else m.action in SMALL_TALK  # a set may not say which kind
        t.talk_ok += right
        if not right:
            t.misses.append(f"{item.q}\n    expected {item.kind}; got {m.action} {m.entry_id or ''}")
    return t


def _pct(part: int, whole: int) -> str:
    return f"{part}/{whole} = {part / whole:6.1%}" if whole else "0/0"


def print_tally(title: str, t: Tally) -> None:
    print(f"{title}")
    print(f"  in-domain {t.n}: hit@1 {_pct(t.hit, t.n)}  resolved {_pct(t.resolved, t.n)}  wrong {_pct(t.wrong, t.n)}")
    print(f"               clarify {_pct(t.clarify, t.n)}  fallback {_pct(t.fallback, t.n)}")
    print(f"  out-of-domain {t.ood}: answered {_pct(t.ood_answered, t.ood)}  clarified {_pct(t.ood_clarified, t.ood)}")
    print(f"  small talk {t.talk}: right {_pct(t.talk_ok, t.talk)}")


def print_reliability(t: Tally) -> None:
    print("  reliability (answered questions, in-domain and out-of-domain, by confidence):")
    print("    confidence     answered   right")
    for low, high in zip(BUCKETS, BUCKETS[1:]):
        inside = [right for score, right in t.scores if low <= score < high]
        if inside:
            print(f"    {low:.2f}-{min(high, 1.0):.2f}    {len(inside):8d}   {sum(inside) / len(inside):6.1%}")


def print_thresholds(t: Tally) -> None:
    """What each answer threshold would give: the figures ANSWER_AT is chosen from."""
    n_in = sum(1 for _, _, inside in t.sweep if inside) or 1
    n_out = sum(1 for _, _, inside in t.sweep if not inside) or 1
    print("  answer threshold (on these predictions):  hit@1   wrong   ood answered   precision")
    for at in (0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9):
        hit = sum(1 for s, right, inside in t.sweep if s >= at and right and inside)
        wrong = sum(1 for s, right, inside in t.sweep if s >= at and not right and inside)
        ood = sum(1 for s, _, inside in t.sweep if s >= at and not inside)
        mark = " <- ANSWER_AT" if abs(at - matcher_module.ANSWER_AT) < 1e-9 else ""
        print(f"    {at:.2f}                                  {hit / n_in:6.1%}  {wrong / n_in:6.1%}   {ood / n_out:6.1%}     {hit / max(1, hit + wrong + ood):6.1%}{mark}")


def print_voices(matcher_for: Callable[[QuestionSet], Matcher], sets: Sequence[QuestionSet]) -> None:
    voices = sorted({i.voice for qs in sets for i in qs.in_domain + qs.out_of_domain + qs.smalltalk if i.voice})
    if not voices:
        return
    print("  by voice:")
    for voice in voices:
        t = Tally()
        for qs in sets:
            t.add(score_items(matcher_for(qs), qs, voice))
        f = t.figures()
        print(f"    {voice:24s} in {t.n:3d} hit@1 {f['hit@1']:6.1%} resolved {f['resolved']:6.1%} wrong {f['wrong']:5.1%}  ood {t.ood:3d} answered {f['ood answered']:5.1%}")


def latency(matcher: Matcher, questions: Sequence[str], reps: int) -> tuple[float, float]:
    timings = []
    for _ in range(reps):
        for q in questions:
            started = time.perf_counter()
            matcher.match(q)
            timings.append(time.perf_counter() - started)
    timings.sort()
    return statistics.median(timings) * 1000, timings[max(0, int(len(timings) * 0.99) - 1)] * 1000


def all_sets(extra: Sequence[Path]) -> list[QuestionSet]:
    paths = [*(p for p in TRAINING_SETS if p.exists()), *extra]
    return [qs for path in paths for qs in read_sets(path)]


def cross_validate(kb: KnowledgeBase, sets: Sequence[QuestionSet], matchers: dict[str, Matcher] | None = None,
                   **options) -> tuple[Tally, dict[str, Tally]]:
    """Grouped k-fold, one labelled set per group: train on the others, score the held-out one
    (each fold's matcher is kept in ``matchers`` by the held-out set's name, when given)."""
    total, per_set = Tally(), {}
    for held in sets:
        matcher = Matcher(kb, sets=[s for s in sets if s is not held], cache=False, **options)
        if matchers is not None:
            matchers[held.name] = matcher
        per_set[held.name] = score_items(matcher, held)
        total.add(per_set[held.name])
    return total, per_set


def print_talk_thresholds(matchers: dict[str, Matcher], sets: Sequence[QuestionSet]) -> None:
    """What each small-talk threshold would give on the held-out sets: the figures TALK_AT is chosen from."""
    print("  small-talk threshold (held-out sets):  small talk right   in-domain hit@1   out-of-domain answered   questions taken for small talk")
    for at in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.01):
        total = Tally()
        with patched(matcher_module, "TALK_AT", at):
            for qs in sets:
                total.add(score_items(matchers[qs.name], qs))
        mark = " <- TALK_AT" if abs(at - matcher_module.TALK_AT) < 1e-9 else (" (phrases alone)" if at > 1 else "")
        print(f"    {at:4.2f}                                  {total.talk_ok / max(1, total.talk):6.1%}"
              f"            {total.hit / max(1, total.n):6.1%}            {total.ood_answered / max(1, total.ood):6.1%}"
              f"                   {total.chatted / max(1, total.n + total.ood):6.1%}{mark}")


def memory_added() -> dict[str, float]:
    """RSS the matcher adds to a fresh process that has what the app needs anyway (Flask, Redis,
    YAML, pydantic) and nothing of the matcher: its libraries (jieba, pypinyin, OpenCC, numpy),
    dictionaries, knowledge base and model, from the model cache and by training (MB)."""
    code = (
        "import sys, gc; sys.path.insert(0, %r)\n"
        "def rss():\n"
        "    return int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20\n"
        "import flask, redis, yaml, pydantic; gc.collect(); before = rss()\n"
        "from knowledge.base import load\nkb = load()\n"
        "from knowledge.matcher import Matcher\nm = Matcher(kb, cache=%s); m.match('毕业证丢了'); gc.collect()\n"
        "print(rss() - before)\n"
    )
    out = {}
    Matcher(_knowledge_base())  # make sure the cache holds the shipped model
    for name, cache in (("cached model", True), ("training", False)):
        result = subprocess.run([sys.executable, "-c", code % (str(ROOT), cache)], capture_output=True, text=True, check=True)
        out[name] = float(result.stdout.strip().splitlines()[-1])
    return out


_TIMED = """import sys, time, uuid; sys.path.insert(0, %r)
from knowledge.base import load
from knowledge.examples import Item, QuestionSet, training_sets
kb = load(); sets = training_sets()
def edit():  # one new labelled question, as when staff add a similar question: the model's digest changes
    return [*sets, QuestionSet("edit", in_domain=[Item(q="毕业证书" + uuid.uuid4().hex[:6], expect=("diploma-lost",))])]
from knowledge.matcher import Matcher
started = time.perf_counter(); %s; print(time.perf_counter() - started)
"""


def training_times() -> dict[str, float]:
    """Seconds to build the matcher in a fresh process (imports included) and in a warm one, by case."""
    cases = {
        "from nothing (no cache: every text analysed, scikit-learn imported)": "Matcher(kb, cache=False)",
        "after a staff edit, first retrain in a process (scikit-learn imported)": "Matcher(kb, sets=edit())",
        "after a staff edit, in a worker (started on the cached model) whose edit form had scikit-learn imported":
            "import knowledge.matcher as km; Matcher(kb); km.prepare_training(); km._importing.join(); started = time.perf_counter(); Matcher(kb, sets=edit())",
        "after a staff edit, in a process that has trained before": "Matcher(kb, sets=edit()); started = time.perf_counter(); Matcher(kb, sets=edit())",
        "start-up on unchanged data (model cache)": "Matcher(kb)",
    }
    Matcher(_knowledge_base())  # the caches hold the shipped model and every text's terms
    out = {}
    for name, code in cases.items():
        runs = [subprocess.run([sys.executable, "-c", _TIMED % (str(ROOT), code)], capture_output=True, text=True, check=True) for _ in range(3)]
        out[name] = statistics.median(float(r.stdout.strip().splitlines()[-1]) for r in runs)
    return out


def report(kb: KnowledgeBase, paths: Sequence[Path], reps: int, show_misses: bool = False) -> None:
    matcher = Matcher(kb, memo=0)  # every message decided afresh: the latency figures time the matcher, not a lookup
    print(f"entries {len(kb.entries)}; the shipped matcher trains on {', '.join(p.name for p in TRAINING_SETS if p.exists())}")
    print("(a set it trains on measures the fit, not generalisation: see --cv)\n")
    sets = [qs for path in paths for qs in read_sets(path)]
    total = Tally()
    for qs in sets:
        t = score_items(matcher, qs)
        total.add(t)
        print_tally(qs.name, t)
        print_reliability(t)
    print_voices(lambda qs: matcher, sets)
    questions = [i.q for qs in sets for i in qs.in_domain + qs.out_of_domain + qs.smalltalk]
    med, p99 = latency(matcher, questions, reps)
    print(f"\nlatency per message ({len(questions) * reps} matches): median {med:.3f} ms, p99 {p99:.3f} ms")
    print("train + index (median of 3 fresh processes each):")
    for name, seconds in training_times().items():
        print(f"  {name}: {seconds:.2f} s")
    for name, mb in memory_added().items():
        print(f"memory added per process ({name}): {mb:.1f} MB")
    if show_misses:  # never by default: a blind set's misses, once seen, make it training data
        print(f"\nmisses ({len(total.misses)}):")
        for line in total.misses:
            print(f"- {line}")


def run_cv(kb: KnowledgeBase, extra: Sequence[Path], show_misses: bool) -> None:
    sets = all_sets(extra)
    started = time.perf_counter()
    matchers: dict[str, Matcher] = {}
    total, per_set = cross_validate(kb, sets, matchers, memo=0)
    print(f"grouped cross-validation over {len(sets)} sets ({time.perf_counter() - started:.1f} s)\n")
    for name, t in per_set.items():
        print_tally(f"held out: {name}", t)
    print_tally("\nall held-out sets", total)
    print_reliability(total)
    print_thresholds(total)
    print_talk_thresholds(matchers, sets)
    print_voices(lambda qs: matchers[qs.name], sets)
    if show_misses:
        print(f"\nmisses ({len(total.misses)}):")
        for line in total.misses:
            print(f"- {line}")


@contextlib.contextmanager
def patched(target: object, name: str, value: object) -> Iterator[None]:
    old = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, old)


def ablations(kb: KnowledgeBase, extra: Sequence[Path]) -> None:
    sets = all_sets(extra)
    weights = matcher_module.WEIGHTS
    views = matcher_module.VIEWS
    variants: list[tuple[str, Callable[[], contextlib.AbstractContextManager], dict]] = [("full pipeline", contextlib.nullcontext, {})]
    for view in views:
        variants.append((f"- view {view}", contextlib.nullcontext, {"views": tuple(v for v in views if v != view)}))
    for name in ("keyword", "answer", "similar", "ood"):
        variants.append((f"- field {name}", lambda n=name: patched(matcher_module, "WEIGHTS", {**weights, n: 1e-9}), {}))
    variants.append(("+ view char (character 1-3-grams)", contextlib.nullcontext, {"views": (*views, "char")}))

    def raw_top(self: Matcher, reading):  # noqa: ANN001, ANN202
        _, domain, ranked = original_decided(self, reading)
        return (ranked[0][1] if ranked else 0.0), domain, ranked

    original_decided = Matcher._decided
    original_features = matcher_module.decision_features

    def without_known_share(*args):  # noqa: ANN002, ANN202
        features = original_features(*args).copy()
        features[..., -1] = 0.0
        return features

    @contextlib.contextmanager
    def without_t2s() -> Iterator[None]:
        text_module._clean.cache_clear()
        with patched(text_module, "_T2S", _Identity()):
            yield
        text_module._clean.cache_clear()

    @contextlib.contextmanager
    def whole_jieba_dictionary() -> Iterator[None]:
        text_module._tokenizer.cache_clear()
        with patched(text_module, "RARE_WORD_FREQ", 1):
            yield
        text_module._tokenizer.cache_clear()
    variants += [
        ("- labelled sets as training", contextlib.nullcontext, {"sets": []}),
        ("- homophone correction", lambda: patched(text_module.Analyzer, "correct", lambda self, text: text), {}),
        ("- aliases (Latin → Chinese)", lambda: patched(text_module.Lexicon, "normalise", lambda self, text: text_module.clean(text)), {}),
        ("- pinyin → known words", lambda: patched(text_module.Analyzer, "use_pinyin", lambda self, mapping: None), {}),
        ("- traditional → simplified", without_t2s, {}),
        ("- min_df 2 (keep every term)", lambda: patched(matcher_module, "MIN_DF", 1), {}),
        ("- syllable-pair pruning (pairs from 2 texts)", lambda: patched(matcher_module, "PAIR_MIN_DF", matcher_module.MIN_DF), {}),
        ("- vague-word calibration rows", lambda: patched(matcher_module, "SHARED_BY", 10**6), {}),
        ("- decider (raw top probability)", lambda: patched(Matcher, "_decided", raw_top), {}),
        ("- term for unknown words", lambda: patched(matcher_module, "_rare_key", lambda key: None), {}),
        ("- known-words share (decider)", lambda: patched(matcher_module, "decision_features", without_known_share), {}),
        ("- staff-written terms kept below min_df", lambda: patched(matcher_module, "CURATED_FIELDS", ()), {}),
        ("- rare jieba words left out (whole dictionary)", whole_jieba_dictionary, {}),
        ("- small-talk phrases (the model alone)", lambda: patched(Matcher, "_small_talk", lambda self, text: (None, text)), {}),
        ("- small-talk model (the phrases alone)", lambda: patched(matcher_module, "TALK_AT", 2.0), {}),
        ("- keyword rules", lambda: patched(matcher_module, "load_rules", lambda path, kb: []), {}),
    ]
    print("ablation: grouped cross-validation (figures over all held-out sets)\n")
    print(f"{'variant':36s} {'hit@1':>7s} {'resolved':>9s} {'wrong':>7s} {'ood ans':>8s} {'talk':>7s} {'train s':>8s}")
    base = None
    for name, context, options in variants:
        with context():
            started = time.perf_counter()
            if options.get("sets") == []:
                total = Tally()
                for held in sets:
                    total.add(score_items(Matcher(kb, sets=[], cache=False), held))
            else:
                total, _ = cross_validate(kb, sets, **options)
            seconds = (time.perf_counter() - started) / len(sets)
        f = total.figures()
        base = base or f
        delta = "" if f is base else "  Δhit@1 {:+.1%} Δwrong {:+.1%} Δood {:+.1%}".format(
            f["hit@1"] - base["hit@1"], f["wrong"] - base["wrong"], f["ood answered"] - base["ood answered"]
        )
        print(f"{name:36s} {f['hit@1']:7.1%} {f['resolved']:9.1%} {f['wrong']:7.1%} {f['ood answered']:8.1%} {f['small talk']:7.1%} {seconds:8.2f}{delta}")
        sys.stdout.flush()


class _Identity:
    def convert(self, text: str) -> str:
        return text


def synthetic(kb: KnowledgeBase, copies: int, seed: int = 0) -> KnowledgeBase:
    """``kb`` with each entry copied ``copies - 1`` more times under new ids, its phrases perturbed
    (a character dropped, two swapped, a filler word added), so no two copies read alike."""
    rng = random.Random(seed)
    fillers = ["请问", "老师", "麻烦问下", "我想知道", "那个", "急", "同学问"]

    def perturb(text: str, k: int) -> str:
        chars = list(text)
        if len(chars) > 3:
            del chars[rng.randrange(len(chars))]
            i = rng.randrange(len(chars) - 1)
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        return f"{rng.choice(fillers)}{''.join(chars)}{k}"

    entries = dict(kb.entries)
    for k in range(1, copies):
        for entry in kb.entries.values():
            new_id = f"{entry.id}-copy{k}"
            entries[new_id] = entry.model_copy(
                update={
                    "id": new_id,
                    "question": perturb(entry.question, k),
                    "similar": [perturb(s, k) for s in entry.similar],
                    "keywords": [f"{kw}{k}" for kw in entry.keywords],
                }
            )
    return replace(kb, entries=entries)


def run_scale(kb: KnowledgeBase, factors: Sequence[int], reps: int, budget_mb: float = 1024.0) -> None:
    """Training time, match latency and model size with the real entries and with synthetic copies.

    The model holds a dense weight per term and class, so it grows with entries x vocabulary; a
    factor whose estimated weights (from the largest run so far) exceed ``budget_mb`` is not run."""
    sets = all_sets(())
    questions = [i.q for qs in sets for i in qs.in_domain + qs.out_of_domain][:400]
    print(f"{'entries':>8s} {'train+index s':>14s} {'cpu s':>7s} {'median ms':>10s} {'p99 ms':>8s} {'model MB':>9s} {'RSS added MB':>13s}")
    vocab_per_entry = 0.0
    for factor in factors:
        big = synthetic(kb, factor)
        classes = len(big.entries) + 1
        estimate = classes * vocab_per_entry * len(big.entries) * 8 * (matcher_module.FOLDS + 1) / 2**20
        if vocab_per_entry and estimate > budget_mb:
            print(f"{len(big.entries):8d}   not run: weights estimated at {estimate:,.0f} MB (dense terms x classes, x{matcher_module.FOLDS + 1} while training)")
            continue
        gc.collect()
        before = _rss()
        started, cpu = time.perf_counter(), time.process_time()
        matcher = Matcher(big, cache=False, memo=0)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        med, p99 = latency(matcher, questions, reps)
        model = matcher.model
        vocab_per_entry = max(vocab_per_entry, len(model.vocab) / len(big.entries))
        megabytes = (model.coef.nbytes + model.idf.nbytes + model.view_of.nbytes) / 2**20
        print(f"{len(big.entries):8d} {seconds:14.2f} {cpu:7.2f} {med:10.3f} {p99:8.3f} {megabytes:9.1f} {_rss() - before:13.1f}")
        sys.stdout.flush()
        del matcher, big


def _rss() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", type=Path, help="set files to score (default: the labelled sets in bench/)")
    parser.add_argument("--cv", action="store_true", help="grouped cross-validation over the labelled sets")
    parser.add_argument("--add", type=Path, action="append", default=[], help="a further set file for --cv/--ablate (its own group)")
    parser.add_argument("--ablate", action="store_true", help="cross-validated figures with each view, field and rule removed")
    parser.add_argument("--scale", action="store_true", help="latency, training time and memory at 1x, 10x, 100x entries")
    parser.add_argument("--factors", type=int, nargs="*", default=[1, 10, 100], help="entry multiples for --scale")
    parser.add_argument("--misses", action="store_true", help="list every miss (never by default: a blind set's misses, once seen, make it training data)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions for the latency figures")
    parser.add_argument("--json", action="store_true", help="also print the overall figures as one JSON line")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    kb = _knowledge_base()
    if args.cv:
        run_cv(kb, args.add, args.misses)
    elif args.ablate:
        ablations(kb, args.add)
    elif args.scale:
        run_scale(kb, args.factors, args.reps)
    else:
        report(kb, args.sets or [p for p in TRAINING_SETS if p.exists()], args.reps, args.misses)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
