"""``flask admin …``: staff accounts for the console (there is no sign-up page on purpose)."""
from __future__ import annotations

import re
import sys

import click
from flask.cli import AppGroup

from . import auth

admin_cli = AppGroup("admin", help="Staff accounts of the console at /admin.")
MIN_PASSWORD = 8


def _name(name: str) -> str:
    if not re.match(auth.USERNAME_PATTERN, name):
        raise click.BadParameter("use letters, digits and . _ @ - (at most 64)", param_hint="NAME")
    return name


@admin_cli.command("create-user")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
def create_user(name: str, password_stdin: bool) -> None:
    """Create staff account NAME, or set a new password for it."""
    _name(name)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD:
        raise click.UsageError(f"the password needs at least {MIN_PASSWORD} characters")
    existed = auth.store().admin_user(name) is not None
    auth.create_user(name, password)
    auth.store().admin_record("cli", "user.password" if existed else "user.create", name)
    click.echo(f"{'updated' if existed else 'created'} staff account {name}")


@admin_cli.command("list-users")
def list_users() -> None:
    """List the staff accounts with the time each was created."""
    store = auth.store()
    for name in store.admin_users():
        user = store.admin_user(name) or {}
        click.echo(f"{name}\t{user.get('created', '')}")


@admin_cli.command("delete-user")
@click.argument("name")
def delete_user(name: str) -> None:
    """Delete staff account NAME (signed-in sessions of it stop working at once)."""
    if not auth.store().admin_delete_user(name):
        raise click.ClickException(f"no staff account {name}")
    auth.store().admin_record("cli", "user.delete", name)
    click.echo(f"deleted staff account {name}")
