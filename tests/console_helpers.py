"""Helpers for the staff console tests: read forms out of the served HTML and post them back as a browser would."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Callable, TypeVar

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


@dataclass
class Form:
    action: str
    method: str
    classes: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    buttons: list[tuple[str, str]] = field(default_factory=list)

    def data(self, button: tuple[str, str] | None = None, **changes: str) -> dict[str, Any]:
        """What a browser submits: every successful control, with ``changes`` replacing values by name."""
        out: dict[str, Any] = {}
        for name, value in self.fields:
            if name in changes:
                continue
            out.setdefault(name, []).append(value)
        for name, value in changes.items():
            out[name] = [value]
        if button is not None:
            out[button[0]] = [button[1]]
        return {k: v if len(v) > 1 else v[0] for k, v in out.items()}

    def value(self, name: str) -> str | None:
        return next((v for n, v in self.fields if n == name), None)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._textarea: str | None = None
        self._text: list[str] = []
        self._select: str | None = None
        self._options: list[tuple[str, bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._form = Form(a.get("action", ""), a.get("method", "get").lower(), a.get("class", ""))
            self.forms.append(self._form)
        if self._form is None:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text").lower()
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            if kind in ("submit", "button", "file"):
                return
            self._form.fields.append((name, a.get("value", "")))
        elif tag == "button" and name:
            self._form.buttons.append((name, a.get("value", "")))
        elif tag == "textarea" and name:
            self._textarea, self._text = name, []
        elif tag == "select" and name:
            self._select, self._options = name, []
        elif tag == "option" and self._select is not None:
            self._options.append((a.get("value", ""), "selected" in a))

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea" and self._textarea is not None and self._form is not None:
            text = "".join(self._text)
            for newline in ("\r\n", "\n"):  # HTML drops one newline right after <textarea>
                if text.startswith(newline):
                    text = text[len(newline):]
                    break
            self._form.fields.append((self._textarea, text.replace("\r\n", "\n")))
            self._textarea = None
        elif tag == "select" and self._select is not None and self._form is not None:
            chosen = next((v for v, selected in self._options if selected), self._options[0][0] if self._options else "")
            self._form.fields.append((self._select, chosen))
            self._select = None
        elif tag == "form":
            self._form = None


def forms(html: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


def form(html: str, css_class: str = "", action: str | None = None) -> Form:
    """The page's form with that class (or action)."""
    for found in forms(html):
        if css_class and css_class not in found.classes.split():
            continue
        if action is not None and found.action.split("?")[0] != action:
            continue
        return found
    raise AssertionError(f"no form {css_class or action!r} on the page")


def csrf(html: str) -> str:
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(r'value="([^"]+)"[^>]*name="csrf_token"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def field_errors(html: str) -> dict[str, list[str]]:
    """The messages shown next to fields (``<p class="error" data-field=…>``)."""
    errors: dict[str, list[str]] = {}
    for name, message in re.findall(r'<p class="error" data-field="([^"]+)">(.*?)</p>', html, re.S):
        errors.setdefault(name, []).append(message)
    return errors


def wait_for(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy (no fixed sleeps); fail with its last value."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    assert value, f"condition not met within {timeout} s (last: {value!r})"
    return value


def create_user_cli(env: dict[str, str], name: str, password: str) -> subprocess.CompletedProcess:
    """``flask admin create-user NAME --password-stdin``, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "admin", "create-user", name, "--password-stdin"],
        cwd=ROOT, env=env, input=password + "\n", capture_output=True, text=True, timeout=120,
    )
