"""The knowledge base as one ``.xlsx`` sheet and back: staff keep their FAQs in Excel.

One row per entry. Lists (similar questions, keywords, links, sources) are one
item per line in their cell; the audience variants are YAML in theirs. Import
compares each row with the live entry as validated data, so an exported sheet
imported unchanged changes nothing, and an edited row becomes a new entry file
written in the shipped style. A row never deletes an entry: switch it off with
启用 = 否. Rows that cannot be read are refused with their row numbers, and the
caller saves the changed files through ``LiveKnowledge.save`` (all or nothing).

openpyxl is imported by the two functions that use it: importing it costs every
worker a quarter of a second at start, for pages staff open now and then.
"""
from __future__ import annotations

import datetime as dt
import io
import re
from typing import Any, Mapping
from zipfile import BadZipFile

import yaml
from pydantic import ValidationError

from .base import Problem
from .live import Invalid, _Dumper, entry_from_yaml, entry_to_yaml
from .schema import Entry

SHEET = "entries"
# column header -> entry field; the order is the sheet's
COLUMNS = {
    "id": "id",
    "标准问": "question",
    "相似问": "similar",
    "关键词": "keywords",
    "答案": "answer",
    "链接": "links",
    "适用对象": "audience",
    "分版本答案": "variants",
    "来源": "source",
    "更新日期": "updated",
    "启用": "enabled",
}
WIDTHS = {"id": 24, "标准问": 30, "相似问": 30, "关键词": 16, "答案": 60, "链接": 30, "适用对象": 12, "分版本答案": 60, "来源": 18, "更新日期": 12, "启用": 6}
YES = {"是", "y", "yes", "true", "1", "启用", "on"}
NO = {"否", "n", "no", "false", "0", "停用", "禁用", "off"}
_ENTRY_FILE = re.compile(r"^entries/[^/]+\.yaml$")


def _lines(value: Any) -> list[str]:
    return [line.strip() for line in str(value or "").splitlines() if line.strip()]


def _cells(entry: Mapping[str, Any]) -> dict[str, Any]:
    variants = ""
    if entry["variants"]:
        variants = yaml.dump(entry["variants"], Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=1000)
    return {
        "id": entry["id"],
        "标准问": entry["question"],
        "相似问": "\n".join(entry["similar"]),
        "关键词": "\n".join(entry["keywords"]),
        "答案": entry["answer"].rstrip("\n"),
        "链接": "\n".join(f"{link['title']} {link['url']}" for link in entry["links"]),
        "适用对象": ", ".join(entry["audience"]),
        "分版本答案": variants,
        "来源": "\n".join(f"{s['seed']} {s['question']}" for s in entry["source"]),
        "更新日期": entry["updated"],
        "启用": "是" if entry["enabled"] else "否",
    }


def export_xlsx(files: Mapping[str, str]) -> bytes:
    """Every entry of ``files`` (the live knowledge files), one row each, sorted by id."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    book = Workbook()
    sheet = book.active
    sheet.title = SHEET
    sheet.append(list(COLUMNS))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    entries = sorted((entry_from_yaml(text) for path, text in files.items() if _ENTRY_FILE.match(path)), key=lambda e: e["id"])
    for entry in entries:
        cells = _cells(entry)
        sheet.append([cells[header] for header in COLUMNS])
    wrap = Alignment(wrap_text=True, vertical="top")
    for row in sheet.iter_rows(min_row=2):
        for cell in row:
            cell.alignment = wrap
            cell.data_type = "s"
    for index, header in enumerate(COLUMNS, 1):
        sheet.column_dimensions[sheet.cell(1, index).column_letter].width = WIDTHS[header]
    sheet.freeze_panes = "B2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _link(line: str, row: int, problems: list[Problem], entry_id: str) -> dict[str, str] | None:
    title, _, url = line.rpartition(" ")
    if not title.strip() or not url:
        problems.append(Problem(f"row {row}", entry_id, f"链接 {line!r}: write 'title url', one per line"))
        return None
    return {"title": title.strip(), "url": url}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _row_entry(values: Mapping[str, Any], row: int, current: Mapping[str, Any] | None, problems: list[Problem]) -> dict[str, Any] | None:
    """One row as an entry dict (columns missing from the sheet keep the live entry's values)."""
    entry_id = _text(values.get("id")).strip()
    base = dict(current) if current else entry_from_yaml("")
    entry = dict(base, id=entry_id)
    before = len(problems)
    if "标准问" in values:
        entry["question"] = _text(values["标准问"]).strip()
    for header, field in (("相似问", "similar"), ("关键词", "keywords")):
        if header in values:
            entry[field] = _lines(_text(values[header]))
    if "答案" in values:
        answer = _text(values["答案"]).replace("\r\n", "\n").strip("\n")
        entry["answer"] = answer + "\n" if "\n" in answer else answer
    if "链接" in values:
        entry["links"] = [link for line in _lines(_text(values["链接"])) if (link := _link(line, row, problems, entry_id))]
    if "适用对象" in values:
        entry["audience"] = [a for a in re.split(r"[\s,，、;；]+", _text(values["适用对象"])) if a]
    if "分版本答案" in values:
        raw = _text(values["分版本答案"]).strip()
        try:
            variants = yaml.safe_load(raw) if raw else []
        except yaml.YAMLError as exc:
            problems.append(Problem(f"row {row}", entry_id, f"分版本答案 is not readable YAML: {exc}"))
            variants = []
        if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
            problems.append(Problem(f"row {row}", entry_id, "分版本答案: a YAML list of {audience, answer, links}"))
        else:
            entry["variants"] = entry_from_yaml(yaml.safe_dump({"entry": {"variants": variants}}))["variants"]
    if "来源" in values:
        sources = []
        for line in _lines(_text(values["来源"])):
            seed, _, question = line.partition(" ")
            sources.append({"seed": seed.zfill(3) if seed.isdigit() else seed, "question": question.strip()})
        entry["source"] = sources
    if "更新日期" in values and _text(values["更新日期"]).strip():
        entry["updated"] = _text(values["更新日期"]).strip()
    if "启用" in values:
        flag = _text(values["启用"]).strip().lower()
        if flag in YES or flag == "":
            entry["enabled"] = True
        elif flag in NO:
            entry["enabled"] = False
        else:
            problems.append(Problem(f"row {row}", entry_id, f"启用 {flag!r}: write 是 or 否"))
    if len(problems) > before:
        return None
    entry["updated"] = entry["updated"] or dt.date.today().isoformat()
    try:
        Entry.model_validate(entry)
    except ValidationError as exc:
        for err in exc.errors():
            problems.append(Problem(f"row {row}", entry_id or None, f"{'.'.join(str(p) for p in err['loc']) or 'row'}: {err['msg']}"))
        return None
    return entry


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal as validated entries (whitespace the loader strips does not count)."""
    try:
        return Entry.model_validate(a).model_dump(exclude={"updated"}) == Entry.model_validate(b).model_dump(exclude={"updated"})
    except ValidationError:
        return False


def import_xlsx(data: bytes, files: Mapping[str, str]) -> dict[str, str | None]:
    """The entry files a sheet changes (path -> new text), given the live ``files``; ``Invalid`` with row numbers if unreadable."""
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (InvalidFileException, BadZipFile, OSError, KeyError, ValueError) as exc:
        raise Invalid([Problem("spreadsheet", None, f"not an .xlsx workbook: {exc.__class__.__name__}")]) from exc
    sheet = book[SHEET] if SHEET in book.sheetnames else book.worksheets[0]
    rows = sheet.iter_rows(values_only=True)
    header = [(_text(h).strip()) for h in next(rows, ())]
    if "id" not in header:
        raise Invalid([Problem("spreadsheet", None, "row 1 must hold the column names, with an 'id' column")])
    unknown = [h for h in header if h and h not in COLUMNS]
    if unknown:
        raise Invalid([Problem("spreadsheet", None, f"unknown column(s): {', '.join(unknown)}")])
    current = {e["id"]: (path, e) for path, text in files.items() if _ENTRY_FILE.match(path) for e in [entry_from_yaml(text)]}
    problems: list[Problem] = []
    changes: dict[str, str | None] = {}
    seen: dict[str, int] = {}
    today = dt.date.today().isoformat()
    for number, cells in enumerate(rows, 2):
        values = {h: v for h, v in zip(header, cells) if h}
        if all(_text(v).strip() == "" for v in values.values()):
            continue
        entry_id = _text(values.get("id")).strip()
        if entry_id in seen:
            problems.append(Problem(f"row {number}", entry_id, f"id also on row {seen[entry_id]}"))
            continue
        seen[entry_id] = number
        path, old = current.get(entry_id, (f"entries/{entry_id}.yaml", None))
        entry = _row_entry(values, number, old, problems)
        if entry is None or (old is not None and _same(old, entry) and entry["updated"] == old["updated"]):
            continue
        if old is not None and entry["updated"] == old["updated"] and not _same(old, entry):
            entry["updated"] = today
        changes[path] = entry_to_yaml(entry)
    book.close()
    if problems:
        raise Invalid(problems)
    return changes
