"""The shape of the knowledge data, as pydantic models.

Everything under ``knowledge/`` is data that staff may edit; these models are the
one place that says what a valid file looks like, so ``flask kb validate`` and
the loader reject the same mistakes with the same words.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ENTRY_ID = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
SEEDS = ("000", "001", "002", "004")
_LINK = re.compile(r"^(https://[A-Za-z0-9.-]+\.[A-Za-z]{2,}(?::\d+)?(?:/\S*)?|tel:[0-9+\-]+|mailto:[^@\s]+@[^@\s]+\.[A-Za-z]{2,})$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


class Link(_Strict):
    title: str = Field(min_length=1)
    url: str

    @field_validator("url")
    @classmethod
    def _well_formed(cls, url: str) -> str:
        if not _LINK.match(url):
            raise ValueError(f"link {url!r} is not a well-formed https, tel: or mailto: address")
        return url


class Source(_Strict):
    seed: Literal["000", "001", "002", "004"]
    question: str = Field(min_length=1)


class Variant(_Strict):
    """The answer for one audience where the seeds differ (本专科 / 研究生 / 国开)."""

    audience: str
    answer: str
    links: list[Link] = []

    _answer = field_validator("answer")(_non_blank)


class Entry(_Strict):
    id: str = Field(pattern=ENTRY_ID)
    question: str = Field(min_length=2)
    similar: list[str] = Field(min_length=6)
    keywords: list[str] = []
    answer: str
    links: list[Link] = []
    source: list[Source] = Field(min_length=1)
    audience: list[str] = Field(min_length=1)
    variants: list[Variant] = []
    updated: dt.date
    enabled: bool = True  # staff switch an entry off (console, spreadsheet) rather than delete it

    _answer = field_validator("answer")(_non_blank)

    @field_validator("similar", "keywords")
    @classmethod
    def _no_blank_items(cls, items: list[str]) -> list[str]:
        if any(not item.strip() for item in items):
            raise ValueError("contains an empty item")
        if len(set(items)) != len(items):
            raise ValueError("contains the same item twice")
        return items

    @model_validator(mode="after")
    def _one_variant_per_audience(self) -> "Entry":
        seen = [v.audience for v in self.variants]
        if len(seen) != len(set(seen)):
            raise ValueError("two variants for the same audience")
        return self


class EntryFile(_Strict):
    """One file under ``knowledge/entries/``: one entry, named after its id."""

    entry: Entry


class Office(_Strict):
    name: str = Field(min_length=1)
    address: str = ""
    phone: str = ""
    person: str = ""
    hours: str = ""


class Audience(_Strict):
    label: str = Field(min_length=1)
    hints: list[str] = []
    office: Office | None = None


class Profile(_Strict):
    """``knowledge/school.yaml``: what differs from one school to the next."""

    school: str = Field(min_length=1)
    default_audience: str
    audiences: dict[str, Audience] = Field(min_length=1)
    office: Office | None = None  # the general office, for an audience that has none of its own
    chsi: dict[str, str] = {}

    @model_validator(mode="after")
    def _default_is_known(self) -> "Profile":
        if self.default_audience not in self.audiences:
            raise ValueError(f"default_audience {self.default_audience!r} is not one of the audiences")
        if self.office is None and self.audiences[self.default_audience].office is None:
            raise ValueError("the default audience needs an office, or give a general `office`")
        return self

    def office_of(self, audience: str) -> Office:
        """The audience's own office, else the general one: a contact is never blank."""
        own = self.audiences[audience].office if audience in self.audiences else None
        return own or self.office or self.audiences[self.default_audience].office  # type: ignore[return-value]


class MenuButton(_Strict):
    name: str = Field(min_length=1)
    key: str | None = None
    url: str | None = None
    entry: str | None = None
    group: str | None = None
    text: str | None = None
    sub_button: list["MenuButton"] = []

    @model_validator(mode="after")
    def _one_kind(self) -> "MenuButton":
        if self.sub_button:
            if self.key or self.url or self.entry or self.group or self.text:
                raise ValueError(f"menu button {self.name!r} has sub-buttons and an action")
        elif self.url:
            if not self.url.startswith("https://"):
                raise ValueError(f"menu button {self.name!r}: url must be https")
        elif not self.key or sum(bool(x) for x in (self.entry, self.group, self.text)) != 1:
            raise ValueError(f"menu button {self.name!r} needs a key and one of entry, group or text")
        return self


class Menu(_Strict):
    """The custom menu; the platform's limits (3 buttons, 5 sub-buttons, name and key bytes) are checked by
    ``knowledge.base`` so each one is reported with its button."""

    button: list[MenuButton] = Field(min_length=1)
