"""``flask admin …``: staff accounts for the console (there is no sign-up page on purpose)."""
from __future__ import annotations

import functools
import re
import sys
from typing import Any, Callable, TypeVar

import click
import redis
from flask.cli import AppGroup

import config as settings
import state

from . import auth

F = TypeVar("F", bound=Callable[..., Any])
admin_cli = AppGroup("admin", help="Staff accounts of the console at /admin.")
MIN_PASSWORD = 8


def _store() -> state.Store:
    """The bot's Redis (the embedded one is started if the bot is not running); a configuration problem is a message."""
    try:
        return auth.store()
    except settings.ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _redis_needed(command: F) -> F:
    """Accounts live in Redis: say so plainly when it does not answer."""

    @functools.wraps(command)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except redis.RedisError as exc:
            raise click.ClickException(f"Redis does not answer ({exc.__class__.__name__}): accounts cannot be read or changed") from None

    return wrapped  # type: ignore[return-value]


def _name(name: str) -> str:
    if not re.match(auth.USERNAME_PATTERN, name):
        raise click.BadParameter("use letters, digits and . _ @ - (at most 64)", param_hint="NAME")
    return name


@admin_cli.command("create-user")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@_redis_needed
def create_user(name: str, password_stdin: bool) -> None:
    """Create staff account NAME, or set a new password for it."""
    _name(name)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD:
        raise click.UsageError(f"the password needs at least {MIN_PASSWORD} characters")
    existed = _store().admin_user(name) is not None
    _store()
    auth.create_user(name, password)
    _store().admin_record("cli", "user.password" if existed else "user.create", name)
    click.echo(f"{'updated' if existed else 'created'} staff account {name}")


@admin_cli.command("list-users")
@_redis_needed
def list_users() -> None:
    """List the staff accounts with the time each was created."""
    store = _store()
    for name in store.admin_users():
        user = store.admin_user(name) or {}
        click.echo(f"{name}\t{user.get('created', '')}")


@admin_cli.command("delete-user")
@click.argument("name")
@_redis_needed
def delete_user(name: str) -> None:
    """Delete staff account NAME (signed-in sessions of it stop working at once)."""
    if not _store().admin_delete_user(name):
        raise click.ClickException(f"no staff account {name}")
    _store().admin_record("cli", "user.delete", name)
    click.echo(f"deleted staff account {name}")
