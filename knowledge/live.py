"""The live knowledge base: the shipped ``knowledge/`` folder plus the files staff changed, kept in Redis.

Staff edits never touch the shipped YAML. Each save stores the changed files
(``kb:overlay``, see state.py) with a per-file revision, appends them to the
file's history and bumps ``kb:version``; every app process polls that version
and rebuilds (bot.py). Building a live knowledge base is nothing special: the
effective files are written to a temporary folder and loaded by the same code
as the shipped folder (``bot.knowledge``), so a save is checked exactly like
``flask kb validate`` and, with the matcher built too, an edit that cannot be
served is refused with its reasons before anything is stored.

Files are addressed by their path relative to the knowledge folder
(``entries/<id>.yaml``, ``texts.yaml``, ``lexicon/synonyms.yaml`` …). Revision 0
is the shipped file; a text of None means the file is deleted.

These methods raise ``redis.RedisError`` when Redis does not answer: the console
has no stateless mode (the bot itself keeps answering from what it has).
"""
from __future__ import annotations

import datetime as dt
import difflib
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

import yaml

import state

from .base import SAFE_LOADER, KnowledgeBase, KnowledgeError, Problem
from .matcher import Matcher

SUFFIXES = (".yaml", ".yml", ".txt", ".json", ".csv", ".tsv")  # the data files a knowledge folder holds
MAX_FILE_BYTES = 512 * 1024
_PATH = re.compile(r"^(?:[a-z0-9_][a-z0-9_.-]*/)*[a-z0-9_][a-z0-9_.-]*\.(?:yaml|yml|txt|json|csv|tsv)$")
Changes = Mapping[str, "str | None"]


class Conflict(Exception):
    """Someone saved the file since the editor read it; ``diff`` shows theirs against yours."""

    def __init__(self, path: str, expected_rev: int, actual_rev: int, diff: str):
        self.path, self.expected_rev, self.actual_rev, self.diff = path, expected_rev, actual_rev, diff
        super().__init__(f"{path} changed since revision {expected_rev} (now revision {actual_rev})")


class Invalid(Exception):
    """The change is refused; ``problems`` lists why, each with its file and entry."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def read_folder(folder: Path) -> dict[str, str]:
    """Every knowledge file under ``folder`` (YAML and word lists), by relative path; code and caches are skipped."""
    files: dict[str, str] = {}
    for path in sorted(Path(folder).rglob("*")):
        parts = path.relative_to(folder).parts
        if path.is_file() and path.suffix in SUFFIXES and not any(part.startswith((".", "__")) for part in parts):
            files["/".join(parts)] = path.read_text(encoding="utf-8")
    return files


def write_folder(files: Mapping[str, str], folder: Path) -> None:
    for rel, text in files.items():
        target = Path(folder) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def build_files(files: Mapping[str, str], config: Mapping[str, Any]) -> tuple[KnowledgeBase, Matcher]:
    """Load a set of knowledge files exactly as the shipped folder is loaded; ``KnowledgeError`` if it cannot be served."""
    import bot  # the loader of a knowledge folder; imported here as bot.py itself uses this module

    with tempfile.TemporaryDirectory(prefix="xueji-kb-") as folder:
        write_folder(files, Path(folder))
        return bot.knowledge({**config, "KNOWLEDGE_DIR": folder})


def unified_diff(old: str | None, new: str | None, path: str, old_label: str = "", new_label: str = "") -> str:
    lines = difflib.unified_diff(
        (old or "").splitlines(keepends=True),
        (new or "").splitlines(keepends=True),
        fromfile=f"{path} {old_label}".strip(),
        tofile=f"{path} {new_label}".strip(),
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _path_problems(changes: Changes) -> list[Problem]:
    problems = []
    for path, text in changes.items():
        if not _PATH.match(path) or ".." in path.split("/"):
            problems.append(Problem(path, None, "not a knowledge file path (like entries/<id>.yaml or texts.yaml)"))
        elif text is not None and len(text.encode("utf-8")) > MAX_FILE_BYTES:
            problems.append(Problem(path, None, f"over {MAX_FILE_BYTES // 1024} KB"))
        elif text is not None and path.endswith((".yaml", ".yml")):
            try:
                yaml.load(text, Loader=SAFE_LOADER)
            except yaml.YAMLError as exc:
                problems.append(Problem(path, None, f"cannot read: {exc}"))
    return problems


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class LiveKnowledge:
    """Shipped knowledge/ folder + overlay of changed files in Redis (state.py keys kb:*)."""

    def __init__(self, shipped_dir: Path, store: state.Store, config: Mapping[str, Any]):
        self.shipped_dir = Path(shipped_dir)
        self.store = store
        self.config = dict(config)
        self._shipped: dict[str, str] | None = None

    # --- reading ---

    def shipped(self) -> dict[str, str]:
        """The shipped files (read once: they change only with a deploy, which restarts the app)."""
        if self._shipped is None:
            self._shipped = read_folder(self.shipped_dir)
        return dict(self._shipped)

    def version(self) -> int:
        """``kb:version``: 0 while nothing has been saved."""
        return self.store.kb_snapshot()[0]

    def _effective(self, overlay: Mapping[str, dict[str, Any]]) -> dict[str, str]:
        files = self.shipped()
        for path, record in overlay.items():
            if record.get("text") is None:
                files.pop(path, None)
            else:
                files[path] = record["text"]
        return dict(sorted(files.items()))

    def snapshot(self) -> tuple[int, dict[str, str], dict[str, int]]:
        """(version, effective files, revision of every overlaid file), consistent with each other."""
        version, overlay = self.store.kb_snapshot()
        return version, self._effective(overlay), {path: int(r.get("rev", 0)) for path, r in overlay.items()}

    def files(self) -> dict[str, str]:
        """The effective files: shipped, with the overlay applied (deletions removed)."""
        return self.snapshot()[1]

    def read(self, path: str) -> tuple[str | None, int]:
        """(text, or None if there is no such file; its revision, 0 for the shipped one)."""
        _, files, revs = self.snapshot()
        return files.get(path), revs.get(path, 0)

    def build(self) -> tuple[int, KnowledgeBase, Matcher]:
        """The live knowledge base and its matcher, with the version they are built from."""
        version, files, _ = self.snapshot()
        kb, matcher = build_files(files, self.config)
        return version, kb, matcher

    # --- checking ---

    def _apply(self, files: Mapping[str, str], changes: Changes) -> dict[str, str]:
        merged = dict(files)
        for path, text in changes.items():
            if text is None:
                merged.pop(path, None)
            else:
                merged[path] = text
        return merged

    def _check(self, files: Mapping[str, str], changes: Changes) -> tuple[tuple[KnowledgeBase, Matcher] | None, list[Problem]]:
        problems = _path_problems(changes)
        if problems:
            return None, problems
        try:
            return build_files(self._apply(files, changes), self.config), []
        except KnowledgeError as exc:
            return None, exc.problems

    def draft(self, changes: Changes) -> tuple[KnowledgeBase, Matcher]:
        """The knowledge base and matcher the bot would have with ``changes`` saved; ``Invalid`` if it could not."""
        built, problems = self._check(self.files(), changes)
        if built is None:
            raise Invalid(problems)
        return built

    def validate(self, changes: Changes) -> list[Problem]:
        """Why ``changes`` would be refused (empty: they would be accepted), the checks of ``flask kb validate``."""
        return self._check(self.files(), changes)[1]

    # --- writing ---

    def save(self, changes: Changes, user: str, base_revs: Mapping[str, int], message: str = "") -> int:
        """Validate and store ``changes`` (None deletes a file) in one go; returns the new version.

        ``base_revs`` holds the revision each file had when the editor read it: a file saved by someone else
        since raises ``Conflict`` (a path missing from ``base_revs`` is not checked). An invalid result
        raises ``Invalid`` and stores nothing, so the previous answer stays live.
        """
        for _ in range(10):
            version, files, revs = self.snapshot()
            for path in changes:
                if path in base_revs and int(base_revs[path]) != revs.get(path, 0):
                    raise Conflict(path, int(base_revs[path]), revs.get(path, 0),
                                   unified_diff(files.get(path), changes[path], path, "(theirs)", "(yours)"))
            changed = {path: text for path, text in changes.items() if files.get(path) != text}
            if not changed:
                return version
            built, problems = self._check(files, changed)
            if built is None:
                raise Invalid(problems)
            at = _now()
            records = {
                path: {"text": text, "rev": revs.get(path, 0) + 1, "version": version + 1, "user": user, "at": at, "message": message}
                for path, text in changed.items()
            }
            detail = ", ".join(f"{p}@{r['rev']}" for p, r in records.items()) + (f": {message}" if message else "")
            new_version = self.store.kb_write(version, records, {"at": at, "user": user, "action": "kb.save", "detail": detail})
            if new_version is not None:
                return new_version
        raise Conflict(next(iter(changes)), -1, -1, "")

    def history(self, path: str) -> list[dict[str, Any]]:
        """Every saved revision of ``path``, newest first, each with the diff from the one before; the shipped file last (rev 0)."""
        records = self.store.kb_history(path)
        shipped = self.shipped().get(path)
        items = []
        for i, record in enumerate(records):
            before = records[i + 1]["text"] if i + 1 < len(records) else shipped
            items.append({
                "rev": record["rev"], "version": record["version"], "user": record["user"], "at": record["at"],
                "message": record.get("message", ""), "deleted": record["text"] is None,
                "diff": unified_diff(before, record["text"], path, f"rev {record['rev'] - 1}", f"rev {record['rev']}"),
            })
        if shipped is not None:
            items.append({"rev": 0, "version": 0, "user": "", "at": "", "message": "shipped", "deleted": False, "diff": ""})
        return items

    def text_at(self, path: str, rev: int) -> str | None:
        """The text of ``path`` at revision ``rev`` (0: shipped); None if it did not exist then. ``KeyError`` for an unknown revision."""
        if rev == 0:
            return self.shipped().get(path)
        for record in self.store.kb_history(path):
            if record["rev"] == rev:
                return record["text"]
        raise KeyError(f"{path} has no revision {rev}")

    def restore(self, path: str, rev: int, user: str) -> int:
        """Make an earlier revision live again: a save of its text, validated like any save."""
        text = self.text_at(path, rev)
        _, current_rev = self.read(path)
        return self.save({path: text}, user, {path: current_rev}, message=f"restore rev {rev}")

    # --- folders ---

    def export(self, folder: Path) -> None:
        """Write the live knowledge base in the shipped layout (a deleted shipped file is removed from ``folder``)."""
        folder = Path(folder)
        files = self.files()
        write_folder(files, folder)
        for path in self.shipped():
            if path not in files:
                (folder / path).unlink(missing_ok=True)

    def import_folder(self, folder: Path, user: str) -> int:
        """Make ``folder`` (a whole knowledge folder, as ``export`` writes it) the live knowledge base.

        All files are validated together and saved at once, or nothing is; a live file missing from
        ``folder`` is deleted. Returns the new version (the current one when nothing differs)."""
        incoming = read_folder(Path(folder))
        if "texts.yaml" not in incoming or not any(p.startswith("entries/") for p in incoming):
            raise Invalid([Problem(str(folder), None, "not a knowledge folder (needs texts.yaml and entries/)")])
        _, files, revs = self.snapshot()
        changes: dict[str, str | None] = {p: t for p, t in incoming.items() if files.get(p) != t}
        changes.update({p: None for p in files if p not in incoming})
        return self.save(changes, user, {p: revs.get(p, 0) for p in changes}, message=f"import {Path(folder).name}")

    def audit(self, limit: int = 100) -> list[dict[str, Any]]:
        """Who did what in the console, newest first: ``{at, user, action, detail}``."""
        return self.store.admin_audit(limit)


# --- entries as plain dicts, so the console never writes YAML by hand ---

ENTRY_ORDER = ("id", "question", "similar", "keywords", "audience", "answer", "variants", "links", "source", "updated", "enabled")


class _Flow(list):
    """A short list written on one line, as in the shipped files (``audience: [undergrad]``)."""


class _FlowMap(dict):
    """A link or a source on one line: ``{title: 学信网, url: "https://…"}``."""


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)  # list items indented under their key, as in the shipped files


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = None
    if "\n" in value.strip("\n"):
        style = "|"
    elif "://" in value or dumper.resolve(yaml.ScalarNode, value, (True, False)) != "tag:yaml.org,2002:str":
        style = '"'  # "000", "https://…": quoted as in the shipped files
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
_Dumper.add_representer(_Flow, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))
_Dumper.add_representer(dict, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v.items()))
_Dumper.add_representer(_FlowMap, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v.items(), flow_style=True))


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _links(items: Any) -> list[dict[str, str]]:
    return [{"title": _text(l.get("title")), "url": _text(l.get("url"))} for l in items or [] if isinstance(l, dict)]


def entry_from_yaml(text: str) -> dict[str, Any]:
    """An entry file as a plain dict with every field present (lists empty, ``enabled`` True when not set)."""
    data = yaml.load(text, Loader=SAFE_LOADER) or {}
    raw = data.get("entry", {}) if isinstance(data, dict) else {}
    raw = raw if isinstance(raw, dict) else {}
    updated = raw.get("updated")
    return {
        "id": _text(raw.get("id")),
        "question": _text(raw.get("question")),
        "similar": [_text(s) for s in raw.get("similar") or []],
        "keywords": [_text(k) for k in raw.get("keywords") or []],
        "answer": _text(raw.get("answer")),
        "links": _links(raw.get("links")),
        "source": [{"seed": _text(s.get("seed")), "question": _text(s.get("question"))} for s in raw.get("source") or [] if isinstance(s, dict)],
        "audience": [_text(a) for a in raw.get("audience") or []],
        "variants": [
            {"audience": _text(v.get("audience")), "answer": _text(v.get("answer")), "links": _links(v.get("links"))}
            for v in raw.get("variants") or [] if isinstance(v, dict)
        ],
        "updated": updated.isoformat() if isinstance(updated, dt.date) else _text(updated),
        "enabled": raw.get("enabled", True) is not False,
    }


def entry_to_yaml(entry: Mapping[str, Any]) -> str:
    """An entry dict as an entry file in the shipped style; empty optional fields and ``enabled: true`` are left out."""
    out: dict[str, Any] = {}
    for key in ENTRY_ORDER:
        value = entry.get(key)
        if key in ("keywords", "links", "variants") and not value:
            continue
        if key == "enabled":
            if value is False:
                out[key] = False
            continue
        if key == "audience":
            value = _Flow(value or [])
        elif key in ("links", "source"):
            value = [_FlowMap(item) for item in value or []]
        elif key == "variants":
            value = [
                {k: [_FlowMap(link) for link in v] if k == "links" else v for k, v in dict(item).items() if v or k != "links"}
                for item in value
            ]
        elif key == "updated" and isinstance(value, str):
            try:
                value = dt.date.fromisoformat(value)
            except ValueError:
                pass
        elif key in ("answer",) and isinstance(value, str) and "\n" in value.strip("\n") and not value.endswith("\n"):
            value += "\n"
        out[key] = value
    return yaml.dump({"entry": out}, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=1000)
