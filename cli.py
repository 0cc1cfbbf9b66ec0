"""``flask kb …``: the commands staff and operators use on the knowledge base.

``flask --app app kb validate`` checks every file and lists every problem.
``flask --app app kb ask`` shows what the bot decides for a question, through
the same handler code as the webhook, without WeChat or Redis.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterable

import click
from flask import current_app

import bot
import handlers
from handlers.text import SMALL_TALK, respond
from knowledge.base import KnowledgeError, check

kb_cli = click.Group("kb", help="Check the knowledge base and try questions against it.")


@kb_cli.command("validate")
def validate() -> None:
    """Load every knowledge file and report each problem with its file and entry id."""
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


@kb_cli.command("ask")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per question, one per line.")
@click.argument("question", nargs=-1)
def ask(as_json: bool, question: tuple[str, ...]) -> None:
    """Answer QUESTIONs (or each line of standard input) as the bot would answer a first message."""
    kb, matcher = bot.knowledge(current_app.config)
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
