"""Load, check and render the knowledge data under ``knowledge/``.

The YAML files are the source of truth: ``entries/<id>.yaml`` (one answer each),
``school.yaml`` (the school profile filled into answers), ``texts.yaml`` (the
bot's own texts), ``menu.yaml`` (the custom menu) and ``conversation.yaml``
(the words that continue a conversation). ``load`` returns a
``KnowledgeBase`` or raises ``KnowledgeError`` listing every problem found,
each with its file and entry id, so staff can fix them all in one go.
"""
from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

from .conversation import Conversation
from .paging import REPLY_LIMIT, paginate, utf8_len
from .schema import Entry, EntryFile, Menu, MenuButton, Profile
from .text import SAFE_LOADER

DATA_DIR = Path(__file__).resolve().parent
CATALOGUE = DATA_DIR.parent.parent / "shared" / "topics.yaml"

# Texts the code asks for by name; each may use the placeholders listed with it.
REQUIRED_TEXTS: dict[str, set[str]] = {
    "welcome": set(),
    "welcome_outro": set(),
    "help": set(),
    "help_outro": set(),
    "group_intro": {"title"},
    "group_outro": set(),
    "list_outro_stateless": set(),
    "number_without_list": set(),
    "choice_out_of_range": {"count"},
    "fallback": {"recorded", "office_line"},
    "fallback_recorded": set(),
    "fallback_office": {"label"},
    "fallback_office_unknown": set(),
    "fallback_again": set(),
    "human_audience": {"label"},
    "human_ended": set(),
    "audience_question": set(),
    "audience_question_reset": set(),
    "audience_set": {"label"},
    "audience_hint_stateless": set(),
    "other_audience": {"label", "written_for"},
    "feedback": set(),
    "feedback_outro": set(),
    "feedback_nothing": set(),
    "page_mark": {"n", "total"},
    "greeting": set(),
    "thanks": set(),
    "human": set(),
    "media": set(),
    "voice_unrecognized": set(),
    "error": set(),
    "slow_down": set(),
    "unknown_menu": set(),
    "more_trailer": set(),
    "no_more": set(),
    "clarify_intro": set(),
    "clarify_item": {"n", "question"},
    "clarify_outro": set(),
    "link_line": {"title", "url"},
    "contact_address": {"address"},
    "contact_phone": {"phone", "person"},
    "contact_hours": {"hours"},
}
_PROFILE_KEYS = ("school", "office", "office_address", "office_phone", "office_person", "office_hours", "office_contact", "links")


class KnowledgeError(Exception):
    """The knowledge data has problems; ``problems`` lists them all."""

    def __init__(self, problems: list["Problem"]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class Problem:
    file: str
    entry: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file} [{self.entry}]" if self.entry else self.file
        return f"{where}: {self.message}"


def _profile_keys(profile: Profile) -> set[str]:
    return set(_PROFILE_KEYS) | {f"chsi_{k}" for k in profile.chsi} | {f"office_contact_{k}" for k in profile.audiences}


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


@dataclass
class KnowledgeBase:
    entries: dict[str, Entry]
    profile: Profile
    texts: dict[str, str]
    menu: Menu
    sources: dict[str, str] = field(default_factory=dict)
    more_words: frozenset[str] = frozenset()  # compacted (knowledge.text.compact), as messages are compared
    conversation: Conversation = field(default_factory=Conversation)
    warnings: list[Problem] = field(default_factory=list)  # things `kb validate` reports that do not stop the bot
    # Worked out once per audience or answer: a knowledge base never changes once loaded (a reload builds a new one).
    _values: dict[str, dict[str, str]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _pages: dict[tuple[str, str | None], list[str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def audience_of(self, entry: Entry, audience: str | None) -> tuple[str, str, list]:
        """Pick the variant for ``audience`` if the entry has one, else the default answer."""
        for variant in entry.variants:
            if variant.audience == audience:
                return audience, variant.answer, variant.links or entry.links
        default = entry.audience[0] if entry.audience[0] in self.profile.audiences else self.profile.default_audience
        return default, entry.answer, entry.links

    def fits(self, entry_id: str, audience: str) -> bool:
        """Whether the entry's answer (or one of its variants) is written for this audience."""
        entry = self.entries[entry_id]
        return "all" in entry.audience or audience in entry.audience or any(v.audience == audience for v in entry.variants)

    def depends_on_audience(self, entry_id: str) -> bool:
        """Whether the answer differs by audience, so a student whose audience is unknown is asked first."""
        entry = self.entries[entry_id]
        return bool(entry.variants) or "all" not in entry.audience

    def label(self, audience: str) -> str:
        return self.profile.audiences[audience].label

    def answer(self, entry_id: str, audience: str | None = None) -> str:
        """The answer as a student of ``audience`` gets it: when it is written for other students, it says so first
        and gives the student's own office, so no procedure is passed off as applying to everyone."""
        text = self.render(entry_id, audience)
        if audience is None or audience not in self.profile.audiences or self.fits(entry_id, audience):
            return text
        entry = self.entries[entry_id]
        written_for = "、".join(self.label(a) for a in entry.audience if a in self.profile.audiences)
        note = self.text("other_audience", audience, written_for=written_for)
        return f"{note}\n\n{text}"

    def contact(self, audience: str) -> str:
        """An office's name followed by whichever of address, phone and hours the profile gives."""
        office = self.profile.office_of(audience)
        lines = [office.name]
        if office.address:
            lines.append(self.texts["contact_address"].format(address=office.address))
        if office.phone:
            lines.append(self.texts["contact_phone"].format(phone=office.phone, person=office.person).rstrip())
        if office.hours:
            lines.append(self.texts["contact_hours"].format(hours=office.hours))
        return "\n".join(lines)

    def values(self, audience: str, links: Iterable[Any] = ()) -> dict[str, str]:
        """The placeholder values for one audience, as filled into answers."""
        if audience not in self._values:
            self._values[audience] = self._profile_values(audience)
        return {**self._values[audience], "links": "\n".join(self.texts["link_line"].format(title=l.title, url=l.url) for l in links)}

    def _profile_values(self, audience: str) -> dict[str, str]:
        office = self.profile.office_of(audience)
        return {
            "label": self.profile.audiences[audience].label,
            "school": self.profile.school,
            "office": office.name,
            "office_address": office.address,
            "office_phone": office.phone,
            "office_person": office.person,
            "office_hours": office.hours,
            "office_contact": self.contact(audience),
            **{f"office_contact_{key}": self.contact(key) for key in self.profile.audiences},
            **{f"chsi_{k}": v for k, v in self.profile.chsi.items()},
        }

    def render(self, entry_id: str, audience: str | None = None) -> str:
        """The whole answer of an entry for an audience, placeholders filled, links at ``{links}`` or the end."""
        entry = self.entries[entry_id]
        chosen, answer, links = self.audience_of(entry, audience)
        values = self.values(chosen, links)
        text = answer.format_map(values)
        if "links" not in _placeholders(answer) and values["links"]:
            text = f"{text.rstrip()}\n\n{values['links']}"
        return text.strip()

    def pages(self, entry_id: str, audience: str | None = None) -> list[str]:
        if (entry_id, audience) not in self._pages:
            self._pages[(entry_id, audience)] = self.paginate(self.render(entry_id, audience))
        return list(self._pages[(entry_id, audience)])

    def paginate(self, answer: str) -> list[str]:
        """A rendered answer as the pages a student receives, each with the 「更多」 trailer but the last,
        numbered 「（1/3）」 when there is more than one."""
        mark = self.texts.get("page_mark", "")
        room = utf8_len("\n" + mark.format(n=999, total=999)) if mark else 0
        pages = paginate(answer, self.texts["more_trailer"], REPLY_LIMIT - room)
        if len(pages) < 2 or not mark:
            return pages
        return [f"{page}\n{mark.format(n=i, total=len(pages))}" for i, page in enumerate(pages, 1)]

    def text(self, key: str, audience: str | None = None, **values: str) -> str:
        """One of the bot's own texts, with the profile for ``audience`` (and any given values) filled in."""
        chosen = audience if audience in self.profile.audiences else self.profile.default_audience
        merged = {**self.values(chosen), **values}
        return self.texts[key].format_map(merged).strip()

    def menu_action(self, key: str) -> MenuButton | None:
        """The click button with this key (a tap names it in EventKey), or None."""
        for button in self.menu.button:
            for candidate in [button, *button.sub_button]:
                if candidate.key == key:
                    return candidate
        return None


# libyaml's loader when PyYAML has it: the same data, eight times faster (a live reload reads every file)


def _read_yaml(path: Path, problems: list[Problem], name: str | None = None) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        problems.append(Problem(name or path.name, None, f"cannot read: {exc}"))
        return None


def _schema_problems(file: str, entry: str | None, exc: ValidationError, root: str | None = None) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        if root and loc[:1] == [root]:
            loc = loc[1:]
        problems.append(Problem(file, entry, f"{'.'.join(loc) or 'file'}: {err['msg']}"))
    return problems


def _load_entries(folder: Path, problems: list[Problem]) -> tuple[dict[str, Entry], dict[str, str], set[str]]:
    """Valid entries by id, their files, and the names of files that are broken (not reported twice)."""
    entries: dict[str, Entry] = {}
    files: dict[str, str] = {}
    broken: set[str] = set()
    for path in sorted(folder.glob("*.yaml")):
        name = f"entries/{path.name}"
        raw = _read_yaml(path, problems, name)
        if raw is None:
            broken.add(path.stem)
            continue
        entry_id = raw.get("entry", {}).get("id") if isinstance(raw, dict) and isinstance(raw.get("entry"), dict) else None
        try:
            entry = EntryFile.model_validate(raw).entry
        except ValidationError as exc:
            problems.extend(_schema_problems(name, entry_id, exc, root="entry"))
            broken.update({path.stem, entry_id or path.stem})
            continue
        if entry.id in entries:
            problems.append(Problem(name, entry.id, f"duplicate id, also in {files[entry.id]}"))
            continue
        if path.stem != entry.id:
            problems.append(Problem(name, entry.id, f"file should be named {entry.id}.yaml"))
        entries[entry.id] = entry
        files[entry.id] = name
    return entries, files, broken


def _catalogue_ids(catalogue: Path | None) -> list[str]:
    if catalogue is None or not catalogue.exists():
        return []
    data = yaml.load(catalogue.read_text(encoding="utf-8"), Loader=SAFE_LOADER) or {}
    return [t["id"] for t in data.get("topics", [])]


MENU_TOP, MENU_SUB, MENU_TOP_BYTES, MENU_SUB_BYTES, MENU_KEY_BYTES = 3, 5, 16, 60, 128


def _check_menu(menu: Menu, entries: dict[str, Entry], broken: set[str], texts: dict[str, str], groups: set[str],
                problems: list[Problem]) -> None:
    """WeChat's limits for a custom menu, and every click key resolvable to an entry, a group or a text."""
    def problem(message: str) -> None:
        problems.append(Problem("menu.yaml", None, message))

    if len(menu.button) > MENU_TOP:
        problem(f"{len(menu.button)} top-level buttons, WeChat allows at most {MENU_TOP}")
    keys: set[str] = set()
    for top in menu.button:
        if utf8_len(top.name) > MENU_TOP_BYTES:
            problem(f"top-level button name {top.name!r} is {utf8_len(top.name)} bytes, over {MENU_TOP_BYTES} bytes")
        if len(top.sub_button) > MENU_SUB:
            problem(f"button {top.name!r} has {len(top.sub_button)} sub-buttons, WeChat allows at most {MENU_SUB}")
        for button in top.sub_button:
            if utf8_len(button.name) > MENU_SUB_BYTES:
                problem(f"button name {button.name!r} is {utf8_len(button.name)} bytes, over {MENU_SUB_BYTES} bytes")
        for button in [top, *top.sub_button]:
            if button.key:
                if utf8_len(button.key) > MENU_KEY_BYTES:
                    problem(f"menu key {button.key[:20]!r}… is {utf8_len(button.key)} bytes, over {MENU_KEY_BYTES} bytes")
                if button.key in keys:
                    problem(f"menu key {button.key!r} used twice")
                keys.add(button.key)
            if button.entry and button.entry not in entries and button.entry not in broken:
                problem(f"menu key {button.key!r} points at unknown entry {button.entry!r}")
            elif button.entry in entries and not entries[button.entry].enabled:
                problem(f"menu key {button.key!r} points at disabled entry {button.entry!r}")
            if button.group and button.group not in groups:
                problem(f"menu key {button.key!r} points at unknown group {button.group!r}")
            if button.text and button.text not in texts:
                problem(f"menu key {button.key!r} points at unknown text {button.text!r}")


def _check_conversation(conversation: Conversation, entries: dict[str, Entry], broken: set[str], problems: list[Problem]) -> None:
    """Every named entry exists, and no list is left empty. A disabled entry is left out of its lists, so one may
    be disabled, but not the last enabled one of a group (a menu button or the help list would offer nothing)."""
    def only_disabled(ids: Iterable[str]) -> list[str]:
        ids = list(ids)
        if not ids or any(e not in entries for e in ids) or any(entries[e].enabled for e in ids):
            return []
        return ids

    lists = [("the welcome", conversation.welcome_topics)]
    lists += [(f"group {group.key!r}", group.entries) for group in conversation.groups.values()]
    for label, ids in lists:
        for entry_id in ids:
            if entry_id not in entries and entry_id not in broken:
                problems.append(Problem("conversation.yaml", None, f"{label} names unknown entry {entry_id!r}"))
        if disabled := only_disabled(ids):
            problems.append(Problem("conversation.yaml", None,
                                    f"{label} names only disabled entries ({', '.join(disabled)}): keep one enabled"))


def _profile_warnings(profile: Profile) -> list[Problem]:
    """An audience without an office is answered with the general office: allowed, but staff should know."""
    general = profile.office_of(profile.default_audience).name
    return [Problem("school.yaml", key, f"audience {key!r} has no office: its students get the general office ({general})")
            for key, audience in profile.audiences.items() if audience.office is None]


def _check_rendering(kb: KnowledgeBase, files: dict[str, str], problems: list[Problem]) -> None:
    known = _profile_keys(kb.profile)
    for entry in kb.entries.values():
        file = files.get(entry.id, "entries")
        for variant in entry.variants:
            if variant.audience not in kb.profile.audiences:
                problems.append(Problem(file, entry.id, f"variant for unknown audience {variant.audience!r}"))
        for audience in entry.audience:
            if audience not in kb.profile.audiences and audience != "all":
                problems.append(Problem(file, entry.id, f"unknown audience {audience!r}"))
        for answer in [entry.answer, *(v.answer for v in entry.variants)]:
            try:
                unknown = _placeholders(answer) - known
            except ValueError as exc:
                problems.append(Problem(file, entry.id, f"broken placeholder: {exc}"))
                continue
            if unknown:
                problems.append(Problem(file, entry.id, f"unknown placeholder(s): {', '.join(sorted(unknown))}"))
        if any(p.file == file and p.entry == entry.id for p in problems):
            continue
        for audience in [None, *(v.audience for v in entry.variants)]:
            for page in kb.pages(entry.id, audience):
                if utf8_len(page) > REPLY_LIMIT:
                    problems.append(Problem(file, entry.id, f"a page is {utf8_len(page)} bytes, over {REPLY_LIMIT}"))


def _check_texts(texts: dict[str, str], profile_keys: set[str], problems: list[Problem]) -> None:
    for key, allowed in REQUIRED_TEXTS.items():
        if not str(texts.get(key, "")).strip():
            problems.append(Problem("texts.yaml", key, "missing or empty"))
    for key, value in texts.items():
        if not isinstance(value, str):
            problems.append(Problem("texts.yaml", key, "must be a text"))
            continue
        try:
            unknown = _placeholders(value) - profile_keys - REQUIRED_TEXTS.get(key, set())
        except ValueError as exc:
            problems.append(Problem("texts.yaml", key, f"broken placeholder: {exc}"))
            continue
        if unknown:
            problems.append(Problem("texts.yaml", key, f"unknown placeholder(s): {', '.join(sorted(unknown))}"))
        if utf8_len(value) > REPLY_LIMIT:
            problems.append(Problem("texts.yaml", key, f"{utf8_len(value)} bytes, over {REPLY_LIMIT}"))


def _check_similar(entries: dict[str, Entry], files: dict[str, str], problems: list[Problem]) -> None:
    owner: dict[str, str] = {}
    for entry in entries.values():
        for phrase in [entry.question, *entry.similar]:
            key = "".join(phrase.split())
            if key in owner and owner[key] != entry.id:
                problems.append(Problem(files[entry.id], entry.id, f"similar question {phrase!r} is also in {owner[key]}"))
            owner.setdefault(key, entry.id)


def check(folder: Path = DATA_DIR, catalogue: Path | None = CATALOGUE) -> tuple[KnowledgeBase | None, list[Problem]]:
    """Load everything and list every problem; the base is None when it cannot be built."""
    problems: list[Problem] = []
    entries, files, broken = _load_entries(folder / "entries", problems)
    profile_raw = _read_yaml(folder / "school.yaml", problems)
    texts_raw = _read_yaml(folder / "texts.yaml", problems) or {}
    menu_raw = _read_yaml(folder / "menu.yaml", problems)
    profile = menu = None
    try:
        profile = Profile.model_validate(profile_raw)
    except ValidationError as exc:
        problems.extend(_schema_problems("school.yaml", None, exc))
    try:
        menu = Menu.model_validate(menu_raw)
    except ValidationError as exc:
        problems.extend(_schema_problems("menu.yaml", None, exc))
    texts = texts_raw.get("texts", {}) if isinstance(texts_raw, dict) else {}
    if not texts:
        problems.append(Problem("texts.yaml", None, "needs a top-level 'texts' mapping"))

    for topic in _catalogue_ids(catalogue):
        if topic not in entries and topic not in broken:
            problems.append(Problem("entries", topic, "catalogue id has no entry"))
    _check_similar(entries, files, problems)
    if profile is None or menu is None or problems and any(p.file == "texts.yaml" for p in problems):
        return None, problems
    profile_keys = _profile_keys(profile)
    _check_texts(texts, profile_keys, problems)
    if any(p.file == "texts.yaml" for p in problems):
        return None, problems
    conversation_raw = _read_yaml(folder / "conversation.yaml", problems) or {}
    conversation, conversation_problems = Conversation.from_yaml(conversation_raw)
    problems.extend(Problem("conversation.yaml", None, p) for p in conversation_problems)
    kb = KnowledgeBase(entries=entries, profile=profile, texts=texts, menu=menu, sources=files,
                       more_words=conversation.more, conversation=conversation, warnings=_profile_warnings(profile))
    _check_conversation(conversation, entries, broken, problems)
    _check_menu(menu, entries, broken, texts, set(conversation.groups), problems)
    _check_rendering(kb, files, problems)
    return kb, problems


def load(folder: Path = DATA_DIR, catalogue: Path | None = CATALOGUE) -> KnowledgeBase:
    """The knowledge base, or ``KnowledgeError`` with every problem if any."""
    kb, problems = check(folder, catalogue)
    if problems or kb is None:
        raise KnowledgeError(problems)
    return kb
