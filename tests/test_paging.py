"""Long answers become WeChat-sized pages, broken only between sentences."""
from __future__ import annotations

import re

import pytest

from knowledge.base import KnowledgeBase
from knowledge.paging import REPLY_LIMIT, paginate, split_chunks, truncate, utf8_len

TRAILER = "回复「更多」查看下一部分"
SENTENCE_END = "。！？；!?;"


def _long_text(paragraphs: int = 12) -> str:
    steps = [f"{n}. 第{n}步：登录学信网，进入学信档案，核对本人学籍信息是否与实际一致；如有问题，联系学校学籍学历管理部门处理。" * 3 for n in range(1, 6)]
    body = ["学信网上查不到学籍，可能有以下两种情况。" + "请先核实本人账号注册信息是否填写错误。" * 20, "\n".join(steps)]
    return "\n\n".join(body * (paragraphs // 2))


def _strip_trailer(page: str) -> str:
    return page.removesuffix(TRAILER).rstrip()


@pytest.mark.parametrize("paragraphs", [2, 6, 12, 30])
def test_pages_fit_and_join_back_to_the_whole_answer(paragraphs: int) -> None:
    text = _long_text(paragraphs)
    pages = paginate(text, TRAILER)
    assert len(pages) >= 2
    assert all(utf8_len(page) <= REPLY_LIMIT for page in pages)
    assert all(page.endswith(TRAILER) for page in pages[:-1]) and not pages[-1].endswith(TRAILER)
    assert re.sub(r"\s", "", "".join(_strip_trailer(p) for p in pages)) == re.sub(r"\s", "", text)


def test_pages_end_at_sentence_or_line_boundaries() -> None:
    text = _long_text(12)
    for page in paginate(text, TRAILER)[:-1]:
        body = _strip_trailer(page)
        assert body[-1] in SENTENCE_END, body[-20:]


def test_chunks_keep_every_character() -> None:
    text = _long_text(10)
    assert "".join(split_chunks(text, 900)) == text


def test_a_sentence_longer_than_a_page_is_cut_at_a_character_boundary() -> None:
    text = "很长的一句话" * 1000
    pages = paginate(text, TRAILER)
    assert all(utf8_len(page) <= REPLY_LIMIT for page in pages)
    assert "".join(_strip_trailer(p) for p in pages) == text


def test_short_text_is_one_page_without_trailer() -> None:
    assert paginate("  学信网怎么注册？\n", TRAILER) == ["学信网怎么注册？"]


def test_truncate_respects_the_limit_on_multibyte_text() -> None:
    cut = truncate("学" * 1000)
    assert utf8_len(cut) <= REPLY_LIMIT and cut.endswith("…")
    assert truncate("short") == "short"


def test_every_real_answer_and_variant_pages_within_the_limit(kb: KnowledgeBase) -> None:
    for entry in kb.entries.values():
        for audience in [None, *(v.audience for v in entry.variants)]:
            pages = kb.pages(entry.id, audience)
            assert all(utf8_len(page) <= REPLY_LIMIT for page in pages), entry.id
            whole = kb.render(entry.id, audience)
            assert re.sub(r"\s", "", "".join(_strip_trailer(p) for p in pages)) == re.sub(r"\s", "", whole)
