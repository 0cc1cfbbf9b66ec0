"""The knowledge base as a whole: complete, valid, renderable, and nothing invented.

These checks are generic (no per-topic knowledge): every catalogue id has an
entry, the loader finds no problem, every answer renders for every audience
with no placeholder left, and every link, URL, phone number or e-mail address
an answer shows comes from the seed documents or the school profile.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from knowledge.base import CATALOGUE, DATA_DIR, check
from knowledge.paging import REPLY_LIMIT, utf8_len

SEEDS_DIR = CATALOGUE.parent / "seeds"
SCHOOL_YAML = DATA_DIR / "school.yaml"

URL_RE = re.compile(r"https?://[A-Za-z0-9._~:/?#\[\]@!$&'*+,;=%-]+")
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# Landlines (0431-85583206, 010 67410388), hotlines (400-…), mobiles (13800000000).
PHONE_RE = re.compile(r"(?<!\d)(?:0\d{2,3}[- ]?\d{7,8}|[48]00[- ]?\d{3}[- ]?\d{4}|1[3-9]\d{9})(?!\d)")

# Entries the seeds justify beyond the catalogue; they must stay.
EXTRA_IDS = {"chsi-what", "kaoyan-chsi-account"}


def _seed_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(SEEDS_DIR.glob("*.txt")))


def _clean(url: str) -> str:
    return url.rstrip(".,;:!?)'\"")


def _digits(phone: str) -> str:
    return re.sub(r"\D", "", phone)


SOURCE_TEXT = _seed_text().replace("\\_", "_") + "\n" + SCHOOL_YAML.read_text(encoding="utf-8")
ALLOWED_URLS = {_clean(u) for u in URL_RE.findall(SOURCE_TEXT)}
ALLOWED_EMAILS = {e.lower() for e in EMAIL_RE.findall(SOURCE_TEXT)}
ALLOWED_PHONES = {_digits(p) for p in PHONE_RE.findall(SOURCE_TEXT)}


@pytest.fixture(scope="module")
def kb():
    kb, problems = check()
    assert kb is not None, problems
    return kb


def _catalogue_ids() -> list[str]:
    data = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    return [topic["id"] for topic in data["topics"]]


def _renderings(kb):
    """Every (entry id, audience, rendered text) a student can be served."""
    out = []
    for entry in kb.entries.values():
        for audience in [None, *kb.profile.audiences]:
            out.append((entry.id, audience, kb.render(entry.id, audience)))
    return out


def test_seed_sources_found():
    assert len(list(SEEDS_DIR.glob("*.txt"))) == 4
    assert "https://www.chsi.com.cn/" in ALLOWED_URLS
    assert "kefu@chsi.com.cn" in ALLOWED_EMAILS
    assert "01067410388" in ALLOWED_PHONES


def test_catalogue_has_25_topics():
    ids = _catalogue_ids()
    assert len(ids) == 25 and len(set(ids)) == 25


@pytest.mark.parametrize("topic", _catalogue_ids())
def test_every_catalogue_id_has_an_entry(kb, topic):
    assert topic in kb.entries


def test_extra_entries_present(kb):
    assert EXTRA_IDS <= set(kb.entries)


def test_check_reports_no_problems():
    kb, problems = check()
    assert kb is not None
    assert problems == [], "\n".join(map(str, problems))


def test_entries_are_well_formed(kb):
    for entry in kb.entries.values():
        assert len(entry.similar) >= 8, entry.id
        assert str(entry.updated) == "2026-11-22", entry.id
        for audience in entry.audience:
            assert audience == "all" or audience in kb.profile.audiences, entry.id
        for variant in entry.variants:
            assert variant.audience in kb.profile.audiences, entry.id
            assert variant.audience != entry.audience[0], f"{entry.id}: variant duplicates the default audience"


def test_similar_questions_unique_across_entries(kb):
    seen: dict[str, str] = {}
    for entry in kb.entries.values():
        for phrase in [entry.question, *entry.similar]:
            key = "".join(phrase.split())
            assert seen.setdefault(key, entry.id) == entry.id, f"{phrase!r} in {seen[key]} and {entry.id}"


def test_every_rendering_fills_all_placeholders(kb):
    for entry_id, audience, text in _renderings(kb):
        assert "{" not in text and "}" not in text, f"{entry_id} [{audience}]: {text}"
        assert text.strip(), f"{entry_id} [{audience}] is empty"


def test_every_page_fits_a_wechat_reply(kb):
    for entry in kb.entries.values():
        for audience in [None, *kb.profile.audiences]:
            pages = kb.pages(entry.id, audience)
            assert pages and all(utf8_len(p) <= REPLY_LIMIT for p in pages), entry.id


def test_answers_are_plain_wechat_text(kb):
    for entry_id, audience, text in _renderings(kb):
        assert "**" not in text, entry_id
        assert "[image" not in text and "[bookmark" not in text, entry_id
        assert not re.search(r"^\s*#", text, re.M), entry_id
        assert "<a " not in text, entry_id


def test_links_only_from_the_seeds(kb):
    for entry in kb.entries.values():
        for link in [*entry.links, *(l for v in entry.variants for l in v.links)]:
            if link.url.startswith("tel:"):
                assert _digits(link.url) in ALLOWED_PHONES, f"{entry.id}: {link.url}"
            elif link.url.startswith("mailto:"):
                assert link.url[len("mailto:"):].lower() in ALLOWED_EMAILS, f"{entry.id}: {link.url}"
            else:
                assert link.url in ALLOWED_URLS, f"{entry.id}: {link.url}"


def test_no_invented_urls_emails_or_phones(kb):
    for entry_id, audience, text in _renderings(kb):
        for url in URL_RE.findall(text):
            assert _clean(url) in ALLOWED_URLS, f"{entry_id} [{audience}]: URL {url}"
        for email in EMAIL_RE.findall(text):
            assert email.lower() in ALLOWED_EMAILS, f"{entry_id} [{audience}]: e-mail {email}"
        for phone in PHONE_RE.findall(text):
            assert _digits(phone) in ALLOWED_PHONES, f"{entry_id} [{audience}]: phone {phone}"


def test_office_details_only_through_placeholders(kb):
    """A school adopts the bot by editing school.yaml: answers never spell out its offices."""
    literals = set()
    for key in kb.profile.audiences:
        office = kb.profile.office_of(key)
        literals |= {v for v in (office.name, office.address, office.phone, office.person, office.hours) if v}
    for entry in kb.entries.values():
        for template in [entry.answer, *(v.answer for v in entry.variants)]:
            for literal in literals:
                assert literal not in template, f"{entry.id}: hard-coded {literal!r}, use a placeholder"


def test_ouc_only_entries_say_so(kb):
    for entry in kb.entries.values():
        if entry.audience == ["ouc"]:
            assert "国家开放大学" in kb.render(entry.id), entry.id


def test_sources_name_known_seed_questions(kb):
    catalogue = {t["id"]: t["sources"] for t in yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))["topics"]}
    for entry in kb.entries.values():
        seeds = {s.seed for s in entry.source}
        if entry.id in catalogue:
            assert seeds == {s.split()[0] for s in catalogue[entry.id]}, entry.id
