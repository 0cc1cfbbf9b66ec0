"""The other knowledge files staff edit: keyword rules, the bot's own texts, out-of-domain examples.

Each is edited like an entry (试一试 with the draft, what would change, conflict
check, history) and written back as YAML keeping the file's leading comments,
which explain the format to whoever opens it next.
"""
from __future__ import annotations

import re
from typing import Any

import yaml
from flask import render_template, request, url_for
from werkzeug.datastructures import MultiDict

from knowledge.base import REQUIRED_TEXTS, Problem
from knowledge.matcher import prepare_training

from . import bp
from .auth import login_required
from .editing import submit
from .forms import LinesForm, RulesForm, items, lines, texts_form
from .service import live, live_pair

RULES = "rules.yaml"
TEXTS = "texts.yaml"
OUT_OF_DOMAIN = "lexicon/out_of_domain.yaml"
TARGETS = ("entry", "text", "reply")
EMPTY_RULE_ROWS = 2


class _Dumper(yaml.SafeDumper):
    """Multi-line texts as ``|`` blocks, as the shipped files write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def header(text: str | None) -> str:
    """The comment lines a file starts with."""
    kept = []
    for line in (text or "").splitlines():
        if not line.startswith("#"):
            break
        kept.append(line)
    return "".join(f"{line}\n" for line in kept)


def dump(data: dict[str, Any], previous: str | None) -> str:
    body = yaml.dump(data, Dumper=_Dumper, allow_unicode=True, sort_keys=False, default_flow_style=None, width=1000)
    return header(previous) + body


def load(text: str | None) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text or "") or {}
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _general(problems: list[Problem]) -> tuple[dict[str, list[Any]], list[Any]]:
    return {}, [str(p) for p in problems]


def _page(template: str, form: Any, path: str, status: int = 200, **context: Any) -> tuple[str, int]:
    prepare_training()  # a draft of this form is trained next
    context.setdefault("field_errors", {})
    context.setdefault("general_errors", [])
    return render_template(template, form=form, path=path, **context), status


# --- keyword rules --------------------------------------------------------------------------

def _rule_rows(data: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for rule in data.get("rules") or []:
        target = next((t for t in TARGETS if rule.get(t) is not None), "entry")
        rows.append({"keywords": "\n".join(str(k) for k in rule.get("keywords") or []), "match": rule.get("match", "exact"), "target": target, "value": str(rule.get(target) or ""), "delete": ""})
    return rows


def _rules_from(form: RulesForm) -> list[dict[str, Any]]:
    rules = []
    for row in form.rules.entries:
        keywords = items(row.form.keywords.data)
        value = (row.form.value.data or "").strip()
        if row.form.delete.data or (not keywords and not value):
            continue
        target = row.form.target.data if row.form.target.data in TARGETS else "entry"
        rules.append({"keywords": keywords, "match": row.form.match.data or "exact", target: value})
    return rules


def _place_rules(problems: list[Problem]) -> tuple[dict[str, list[Any]], list[Any]]:
    by_rule: dict[str, list[Any]] = {}
    general: list[Any] = []
    for problem in problems:
        found = re.search(r"rule (\d+)", problem.message)
        if found:
            by_rule.setdefault(f"rules-{int(found.group(1)) - 1}", []).append(problem.message)
        else:
            general.append(str(problem))
    return by_rule, general


@bp.route("/rules", methods=["GET", "POST"])
@login_required
def rules() -> Any:
    text, rev = live().read(RULES)
    data = load(text)
    kb, _ = live_pair()
    choices = {"entries": sorted(kb.entries), "texts": sorted(kb.texts)}
    if request.method == "GET":
        form = RulesForm(formdata=None, data={"rules": _rule_rows(data) + [{}] * EMPTY_RULE_ROWS})
        form.base_rev.data = str(rev)
        return _page("admin/rules.html", form, RULES, **choices)
    form = RulesForm()
    new = dict(data)
    if any(name.startswith("rules-") for name in request.form):
        new["rules"] = _rules_from(form)
    return submit({RULES: dump(new, text)}, lambda status, **extra: _page("admin/rules.html", form, RULES, status, **choices, **extra), _place_rules, url_for("admin.rules"), RULES)


# --- the bot's own texts --------------------------------------------------------------------

def _text_keys(texts: dict[str, Any]) -> list[str]:
    return [*REQUIRED_TEXTS, *(key for key in texts if key not in REQUIRED_TEXTS)]


def _place_texts(problems: list[Problem]) -> tuple[dict[str, list[Any]], list[Any]]:
    by_key: dict[str, list[Any]] = {}
    general: list[Any] = []
    for problem in problems:
        if problem.file == TEXTS and problem.entry:
            by_key.setdefault(problem.entry, []).append(problem.message)
        else:
            general.append(str(problem))
    return by_key, general


@bp.route("/texts", methods=["GET", "POST"])
@login_required
def texts() -> Any:
    text, rev = live().read(TEXTS)
    data = load(text)
    current = {str(k): str(v) for k, v in (data.get("texts") or {}).items()}
    keys = _text_keys(current)
    if request.method == "GET":
        form = texts_form(keys, formdata=None, data={f"text_{k}": current.get(k, "") for k in keys})
        form.base_rev.data = str(rev)
        return _page("admin/texts.html", form, TEXTS, keys=keys, required=REQUIRED_TEXTS)
    form = texts_form(keys, formdata=request.form, data={f"text_{k}": current.get(k, "") for k in keys})
    new_texts = {}
    for key in keys:
        value = (getattr(form, f"text_{key}").data or "").replace("\r\n", "\n").strip()
        new_texts[key] = value + "\n" if "\n" in value or "\n" in current.get(key, "") else value
    new = dict(data)
    new["texts"] = new_texts
    render = lambda status, **extra: _page("admin/texts.html", form, TEXTS, status, keys=keys, required=REQUIRED_TEXTS, **extra)  # noqa: E731
    return submit({TEXTS: dump(new, text)}, render, _place_texts, url_for("admin.texts"), TEXTS)


# --- out-of-domain examples -----------------------------------------------------------------

def ood_examples() -> tuple[list[str], str | None, int]:
    text, rev = live().read(OUT_OF_DOMAIN)
    return [str(e) for e in load(text).get("examples") or []], text, rev


def ood_text(examples: list[str], previous: str | None) -> str:
    data = load(previous)
    data["examples"] = examples
    return dump(data, previous)


@bp.route("/out-of-domain", methods=["GET", "POST"])
@login_required
def out_of_domain() -> Any:
    examples, text, rev = ood_examples()
    if request.method == "GET":
        form = LinesForm(formdata=None, data={"examples": "\n".join(examples)})
        form.base_rev.data = str(rev)
        return _page("admin/out_of_domain.html", form, OUT_OF_DOMAIN, exists=text is not None)
    form = LinesForm(formdata=request.form if "examples" in request.form else MultiDict({**request.form, "examples": "\n".join(examples)}))
    new = list(dict.fromkeys(lines(form.examples.data)))
    render = lambda status, **extra: _page("admin/out_of_domain.html", form, OUT_OF_DOMAIN, status, exists=text is not None, **extra)  # noqa: E731
    return submit({OUT_OF_DOMAIN: ood_text(new, text)}, render, _general, url_for("admin.out_of_domain"), OUT_OF_DOMAIN)
