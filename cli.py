"""``flask kb …``: the commands staff and operators use on the knowledge base.

``flask --app app kb validate`` checks every file and lists every problem
(``--live``: the live knowledge base, shipped files plus staff edits).
``flask --app app kb ask`` shows what the bot decides for a question, through
the same handler code as the webhook, without WeChat: from the live knowledge
base when Redis answers (so staff see their edits), else from the shipped
folder (``--shipped`` forces that). It never starts a Redis of its own.
``flask --app app kb export DIR`` writes the live knowledge base in the shipped
layout (to commit it); ``flask --app app kb import DIR`` makes a folder the live
knowledge base, validated as a whole and saved all at once or not at all.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Iterable, NoReturn

import click
from flask import current_app

import bot
import handlers
import state
from handlers.text import SMALL_TALK, respond
from knowledge.base import KnowledgeBase, KnowledgeError, Problem, check
from knowledge.live import Conflict, Invalid, LiveKnowledge
from knowledge.matcher import Matcher

kb_cli = click.Group("kb", help="Check the knowledge base and try questions against it.")


def _live_store(start_embedded: bool) -> state.Store | None:
    """The bot's Redis if it answers (the embedded one started only when asked to), else None."""
    config = current_app.config
    if not start_embedded and not config["REDIS_URL"] and not (Path(config["INSTANCE_PATH"]) / "redis.sock").exists():
        return None  # no bot is running on the embedded Redis: nothing is live but the shipped folder
    store = bot.connect_store(config, start_embedded=start_embedded)
    return store if store.ping() else None


def _live() -> LiveKnowledge:
    store = _live_store(start_embedded=True)
    if store is None:
        raise SystemExit("redis does not answer: the live knowledge base cannot be read")
    return bot.live_knowledge(current_app.config, store)


def _refuse(problems: Iterable[Problem]) -> NoReturn:
    problems = list(problems)
    for problem in problems:
        click.echo(str(problem), err=True)
    raise SystemExit(f"{len(problems)} problem(s) found")


@kb_cli.command("validate")
@click.option("--live", is_flag=True, help="Check the live knowledge base (shipped files plus staff edits in Redis).")
def validate(live: bool) -> None:
    """Load every knowledge file and report each problem with its file and entry id."""
    if live:
        problems = _live().validate({})
        if problems:
            _refuse(problems)
        click.echo("OK: the live knowledge base is valid")
        return
    kb, problems = check(Path(current_app.config["KNOWLEDGE_DIR"]))
    if kb is not None and not problems:
        try:
            bot.knowledge(current_app.config)
        except KnowledgeError as exc:
            problems = exc.problems
    for warning in kb.warnings if kb is not None else []:
        click.echo(f"warning: {warning}", err=True)
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems or kb is None:
        raise SystemExit(f"{len(problems)} problem(s) found")
    click.echo(f"OK: {len(kb.entries)} entries, {sum(len(e.similar) for e in kb.entries.values())} similar questions")


ACTIONS = ("answer", "clarify", "fallback", *SMALL_TALK)


def _report(question: str, outcome: handlers.Outcome) -> dict:
    """The decision in the fixed vocabulary of ``kb ask --json`` (a rule or 「更多」 maps onto it)."""
    match = outcome.match
    action = outcome.effects.outcome
    if action == "rule" and match and match.text_key in SMALL_TALK and not outcome.effects.topic:
        action = match.text_key
    elif action not in ACTIONS:
        action = "answer" if outcome.effects.topic else "fallback"
    return {
        "question": question,
        "action": action,
        "id": outcome.effects.topic,
        "candidates": list(match.candidates) if match else [],
        "score": round(match.score, 4) if match else 0.0,
        "answer": outcome.answer,
        "reply": outcome.reply or "",
    }


def _questions(given: tuple[str, ...]) -> Iterable[str]:
    if given:
        yield from given
        return
    for line in sys.stdin:
        yield line.rstrip("\r\n")


def _ask_knowledge(shipped: bool) -> tuple[KnowledgeBase, Matcher]:
    store = None if shipped else _live_store(start_embedded=False)
    if store is not None:
        try:
            version, kb, matcher = bot.live_knowledge(current_app.config, store).build()
            click.echo(f"(live knowledge base, version {version})", err=True)
            return kb, matcher
        except KnowledgeError as exc:
            click.echo(f"the live knowledge base cannot be built, answering from the shipped folder:\n{exc}", err=True)
    return bot.knowledge(current_app.config)


@kb_cli.command("ask")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per question, one per line.")
@click.option("--shipped", is_flag=True, help="Answer from the shipped folder only, ignoring staff edits.")
@click.argument("question", nargs=-1)
def ask(as_json: bool, shipped: bool, question: tuple[str, ...]) -> None:
    """Answer QUESTIONs (or each line of standard input) as the bot would answer a first message.

    An answer that differs by audience is shown as the profile's default audience gets it (action "answer"),
    where a real student whose audience is not known yet is first asked who they are.
    """
    kb, matcher = _ask_knowledge(shipped)
    for text in _questions(question):
        report = _report(text, respond(handlers.Context(kb=kb, matcher=matcher, ask_audience=False), text))
        if as_json:
            click.echo(json.dumps(report, ensure_ascii=False))
        else:
            click.echo(f"Q: {text}\n→ {report['action']} {report['id'] or ''} (score {report['score']})")
            if report["candidates"]:
                click.echo(f"  candidates: {', '.join(report['candidates'])}")
            click.echo("  " + report["reply"].replace("\n", "\n  ") + "\n")
        sys.stdout.flush()


@kb_cli.command("export")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def export(folder: Path) -> None:
    """Write the live knowledge base (shipped files plus staff edits) to FOLDER in the shipped layout."""
    live = _live()
    live.export(folder)
    click.echo(f"exported version {live.version()} ({len(live.files())} files) to {folder}")


@kb_cli.command("import")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--user", default=lambda: os.environ.get("USER") or "cli", help="Name recorded in the history.")
def import_(folder: Path, user: str) -> None:
    """Make FOLDER (a whole knowledge folder) the live knowledge base: validated, then saved all at once or not at all."""
    live = _live()
    before = live.version()
    try:
        version = live.import_folder(folder, user)
    except Invalid as exc:
        _refuse(exc.problems)
    except Conflict as exc:
        raise SystemExit(f"not imported: {exc}") from None
    click.echo(f"imported {folder}: version {version}" if version != before else f"nothing to import: {folder} is the live version {version}")
