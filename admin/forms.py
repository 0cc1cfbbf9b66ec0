"""The console's forms, and the translation between form text and knowledge data.

Staff type lists one item per line (similar questions, keywords) and links as
``标题 | 网址``; these helpers turn that into the entry dict of
``knowledge.live.entry_to_yaml`` and back. A field the request does not carry
keeps its current value, so a form that only sends ``answer`` changes only the answer.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any, Iterable

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from werkzeug.datastructures import MultiDict
from wtforms import Field, FieldList, FormField, HiddenField, StringField, TextAreaField
from wtforms import Form as PlainForm

from knowledge.base import Problem

_TAKEN = re.compile(r"^similar question '(.+)' is also in (\S+)$")
_SEPARATORS = re.compile(r"[\n,，、;；]+")
TRUE = ("1", "y", "yes", "on", "true")
ENTRY_FIELDS = ("id", "question", "similar", "keywords", "answer", "links", "source", "audience", "variants", "enabled")


class MultiValue(Field):
    """Every value sent under one name (a group of checkboxes, drawn by the template)."""

    def process_formdata(self, valuelist: list[str]) -> None:
        if valuelist:
            self.data = list(valuelist)


class EntryForm(FlaskForm):
    id = StringField()
    question = StringField()
    similar = TextAreaField()
    keywords = TextAreaField()
    answer = TextAreaField()
    links = TextAreaField()
    source = TextAreaField()
    audience = MultiValue(default=[])
    base_rev = HiddenField()
    try_question = StringField()
    message = StringField()


def entry_form(audiences: dict[str, str], **kwargs: Any) -> EntryForm:
    """The entry form with one answer and one links box per audience of the school profile."""

    class Form(EntryForm):
        pass

    for key, label in audiences.items():
        setattr(Form, f"variant_{key}", TextAreaField(name=f"variant-{key}"))
        setattr(Form, f"variant_{key}_links", TextAreaField(name=f"variant-{key}-links"))
    return Form(**kwargs)


def lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def items(text: str | None) -> list[str]:
    """Keywords: one per line, or separated by commas."""
    return [part.strip() for part in _SEPARATORS.split(text or "") if part.strip()]


def pairs_to_text(pairs: Iterable[dict[str, str]], first: str, second: str) -> str:
    return "\n".join(f"{p.get(first, '')} | {p.get(second, '')}" for p in pairs)


def text_to_pairs(text: str | None, first: str, second: str, code: str) -> tuple[list[dict[str, Any]], list[Any]]:
    """``a | b`` lines (a link may also be ``title https://…``); an error names its line (the template words it)."""
    result, errors = [], []
    for number, line in enumerate(lines(text), 1):
        if "|" in line:
            left, _, right = line.rpartition("|")
        else:
            left, _, right = line.rpartition(" ")
        left, right = left.strip(), right.strip()
        if not left or not right:
            errors.append({"code": code, "line": number})
            continue
        result.append({first: left, second: right})
    return result, errors


def _answer(typed: str | None, before: str | None) -> str:
    """The typed answer, as the file keeps it (a multi-line text ends with a newline); unchanged text stays as it was."""
    text = (typed or "").replace("\r\n", "\n").strip()
    if before is not None and before.strip() == text:
        return before
    return text + "\n" if "\n" in text else text


def entry_to_form(entry: dict[str, Any], audiences: dict[str, str]) -> dict[str, Any]:
    """Form values for an entry dict."""
    data: dict[str, Any] = {
        "id": entry.get("id", ""),
        "question": entry.get("question", ""),
        "similar": "\n".join(entry.get("similar") or []),
        "keywords": "\n".join(entry.get("keywords") or []),
        "answer": entry.get("answer", ""),
        "links": pairs_to_text(entry.get("links") or [], "title", "url"),
        "source": pairs_to_text(entry.get("source") or [], "seed", "question"),
        "audience": list(entry.get("audience") or []),
    }
    for variant in entry.get("variants") or []:
        if variant.get("audience") in audiences:
            data[f"variant_{variant['audience']}"] = variant.get("answer", "")
            data[f"variant_{variant['audience']}_links"] = pairs_to_text(variant.get("links") or [], "title", "url")
    return data


def form_to_entry(form: EntryForm, formdata: MultiDict, entry: dict[str, Any], audiences: dict[str, str]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """The entry as the form says it should be, and the errors of lines that cannot be read."""
    errors: dict[str, list[Any]] = {}
    result = dict(entry)
    if "id" in formdata:
        result["id"] = (form.id.data or "").strip()
    if "question" in formdata:
        result["question"] = (form.question.data or "").strip()
    if "similar" in formdata:
        result["similar"] = lines(form.similar.data)
    if "keywords" in formdata:
        result["keywords"] = items(form.keywords.data)
    if "answer" in formdata:
        result["answer"] = _answer(form.answer.data, entry.get("answer"))
    if "links" in formdata:
        result["links"], bad = text_to_pairs(form.links.data, "title", "url", "line_link")
        if bad:
            errors["links"] = bad
    if "source" in formdata:
        result["source"], bad = text_to_pairs(form.source.data, "seed", "question", "line_source")
        if bad:
            errors["source"] = bad
    if "audience" in formdata:
        result["audience"] = [a for a in form.audience.data or [] if a]
    variants = {v.get("audience"): v for v in entry.get("variants") or []}
    for key in audiences:
        name = f"variant-{key}"
        if name not in formdata:
            continue
        answer = _answer(formdata.get(name), (variants.get(key) or {}).get("answer"))
        if not answer:
            variants.pop(key, None)
            continue
        variant = {"audience": key, "answer": answer, "links": (variants.get(key) or {}).get("links", [])}
        if f"{name}-links" in formdata:
            variant["links"], bad = text_to_pairs(formdata.get(f"{name}-links"), "title", "url", "line_link")
            if bad:
                errors[f"variant_{key}_links"] = bad
        variants[key] = variant
    result["variants"] = [v for v in variants.values() if v.get("answer")]
    if "enabled" in formdata:
        result["enabled"] = any(value.strip().lower() in TRUE for value in formdata.getlist("enabled"))
    result.setdefault("enabled", True)
    if result != entry:
        result["updated"] = dt.date.today().isoformat()
    return result, errors


def place_problems(problems: Iterable[Problem], path: str, entry: dict[str, Any] | None = None) -> tuple[dict[str, list[Any]], list[str]]:
    """Put each problem next to the field it is about; the rest (other files, the whole file) go on top."""
    by_field: dict[str, list[Any]] = {}
    general: list[str] = []
    variants = (entry or {}).get("variants") or []
    own_id = (entry or {}).get("id")
    for problem in problems:
        message = problem.message
        taken = _TAKEN.match(message)
        if taken and (problem.file == path or taken.group(2) == own_id):
            # one phrase in two entries is reported on whichever loads second: either way it is ours to fix
            other = taken.group(2) if problem.file == path else problem.entry
            by_field.setdefault("similar", []).append({"code": "similar_taken", "phrase": taken.group(1), "other": other})
            continue
        if problem.file != path:
            general.append(str(problem))
            continue
        head = message.split(":", 1)[0].strip()
        parts = head.split(".")
        name = None
        if parts[0] in ENTRY_FIELDS and " " not in head:
            name = parts[0]
            if name == "variants" and len(parts) > 1 and parts[1].isdigit() and int(parts[1]) < len(variants):
                audience = variants[int(parts[1])].get("audience")
                name = f"variant_{audience}_links" if len(parts) > 2 and parts[2] == "links" else f"variant_{audience}"
        elif message.startswith("similar question"):
            name = "similar"
        elif "placeholder" in message or message.startswith("a page is"):
            name = "answer"
        elif message.startswith(("unknown audience", "variant for unknown audience")):
            name = "audience"
        elif message.startswith("file should be named") or message.startswith("duplicate id"):
            name = "id"
        if name:
            by_field.setdefault(name, []).append(message)
        else:
            general.append(message)
    return by_field, general


class RuleForm(PlainForm):
    keywords = TextAreaField()
    match = StringField(default="exact")  # exact (全匹配) | contains (半匹配); the template draws the choices
    target = StringField(default="entry")  # entry | text | reply
    value = TextAreaField()
    delete = StringField(default="")


class RulesForm(FlaskForm):
    rules = FieldList(FormField(RuleForm), min_entries=0)
    base_rev = HiddenField()
    try_question = StringField()
    message = StringField()


class LinesForm(FlaskForm):
    """A file that is a list of lines (the out-of-domain examples)."""

    examples = TextAreaField()
    base_rev = HiddenField()
    try_question = StringField()
    message = StringField()


class TextsForm(FlaskForm):
    base_rev = HiddenField()
    try_question = StringField()
    message = StringField()


def texts_form(keys: Iterable[str], **kwargs: Any) -> TextsForm:
    class Form(TextsForm):
        pass

    for key in keys:
        setattr(Form, f"text_{key}", TextAreaField(name=key))
    return Form(**kwargs)


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token (and what the button names in hidden fields)."""


class UploadForm(FlaskForm):
    file = FileField(validators=[FileRequired()])


class UnansweredForm(FlaskForm):
    key = HiddenField()
    text = HiddenField()
    entry = StringField()
