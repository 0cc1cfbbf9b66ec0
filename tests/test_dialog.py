"""The conversation, turn by turn, with the real knowledge base and matcher (no Redis: sessions are passed in).

Each test plays the student's messages and feeds the session a turn leaves into
the next one, as the webhook does through Redis.
"""
from __future__ import annotations

from typing import Any

import pytest

import handlers
from handlers.dialog import respond
from handlers.events import on_click, on_subscribe
from knowledge.base import KnowledgeBase
from knowledge.matcher import Matcher
from state import Effects


@pytest.fixture(scope="module")
def matcher(kb: KnowledgeBase) -> Matcher:
    return Matcher(kb)


class Student:
    """Carries the session (and the remembered audience) from one reply to the next, like Store.commit does."""

    def __init__(self, kb: KnowledgeBase, matcher: Matcher, stateful: bool = True, handoff: str = "contacts", **session: Any):
        self.kb, self.matcher, self.stateful, self.handoff = kb, matcher, stateful, handoff
        self.session: dict[str, Any] = dict(session)
        self.effects: Effects | None = None

    def ctx(self) -> handlers.Context:
        return handlers.Context(kb=self.kb, matcher=self.matcher, session=dict(self.session), stateful=self.stateful, handoff=self.handoff)

    def _keep(self, outcome: handlers.Outcome) -> handlers.Outcome:
        effects = outcome.effects
        self.effects = effects
        audience = self.session.get("audience")
        if effects.session is not None:
            self.session = {k: v for k, v in effects.session.items() if k != "audience"}
        if effects.audience is not None:
            audience = effects.audience or None
        if audience:
            self.session["audience"] = audience
        return outcome

    def says(self, text: str) -> handlers.Outcome:
        return self._keep(respond(self.ctx(), text))

    def taps(self, key: str) -> handlers.Outcome:
        return self._keep(on_click(type("Click", (), {"key": key})(), self.ctx()))

    def follows(self) -> handlers.Outcome:
        return self._keep(on_subscribe(None, self.ctx()))


def clarifying_question(matcher: Matcher) -> str:
    for probe in ["学历", "学籍", "毕业证", "查不到", "身份证号", "证明"]:
        if matcher.match(probe).action == "clarify":
            return probe
    pytest.fail("no probe clarifies")


@pytest.mark.parametrize("typed", ["2", "２", "②", "第二个", "第2个", "二", "选2", "2.", "第二条", "我选2"])
def test_every_way_of_typing_two_picks_the_second_option(kb: KnowledgeBase, matcher: Matcher, typed: str) -> None:
    student = Student(kb, matcher, audience="undergrad")
    listed = student.says(clarifying_question(matcher)).effects.session["list"]["items"]
    picked = student.says(typed)
    assert picked.effects.topic == listed[1]
    assert picked.reply == kb.paginate(kb.answer(listed[1], "undergrad"))[0]


def test_an_option_can_be_picked_by_its_text(kb: KnowledgeBase, matcher: Matcher) -> None:
    student = Student(kb, matcher, audience="graduate")
    listed = student.says(clarifying_question(matcher)).effects.session["list"]["items"]
    assert student.says(kb.entries[listed[-1]].question).effects.topic == listed[-1]


def test_out_of_range_names_the_valid_numbers_and_lists_again(kb: KnowledgeBase, matcher: Matcher) -> None:
    student = Student(kb, matcher)
    first = student.says(clarifying_question(matcher))
    count = len(first.effects.session["list"]["items"])
    again = student.says(str(count + 3))
    assert again.effects.topic is None and f"1 到 {count}" in again.reply
    assert all(kb.entries[e].question in again.reply for e in first.effects.session["list"]["items"])
    assert not again.effects.unanswered
    first_item = first.effects.session["list"]["items"][0]
    picked = student.says("1")
    assert picked.effects.topic == first_item or picked.effects.session["pending"]["entry"] == first_item


def test_anything_else_after_a_list_is_a_new_question_and_the_list_is_recorded(kb: KnowledgeBase, matcher: Matcher) -> None:
    student = Student(kb, matcher)
    question = clarifying_question(matcher)
    student.says(question)
    moved_on = student.says(kb.entries["account-forgot-password"].question)
    assert moved_on.effects.topic == "account-forgot-password"
    assert moved_on.effects.unanswered == question and moved_on.effects.unanswered_kind == "clarify"


def test_a_number_with_no_list_is_not_a_question(kb: KnowledgeBase, matcher: Matcher) -> None:
    for typed in ("2", "第二个", "二"):
        outcome = Student(kb, matcher).says(typed)
        assert outcome.reply == kb.text("number_without_list") and outcome.effects.unanswered is None


def test_without_redis_a_list_asks_for_words_and_the_audience_is_not_asked(kb: KnowledgeBase, matcher: Matcher) -> None:
    student = Student(kb, matcher, stateful=False)
    listed = student.says(clarifying_question(matcher))
    assert kb.text("list_outro_stateless") in listed.reply and kb.text("clarify_outro") not in listed.reply
    answered = Student(kb, matcher, stateful=False).says(kb.entries["diploma-lost"].question)
    assert answered.effects.topic == "diploma-lost" and kb.text("audience_hint_stateless") in answered.reply
    fallback = Student(kb, matcher, stateful=False).says("食堂今天中午有什么菜")
    assert kb.text("fallback_recorded").strip("，") not in fallback.reply and fallback.effects.unanswered is None


def test_welcome_lists_the_most_asked_topics_and_a_number_answers(kb: KnowledgeBase, matcher: Matcher) -> None:
    student = Student(kb, matcher, audience="undergrad")
    welcome = student.follows()
    topics = list(kb.conversation.welcome_topics)
    assert "回复「人工」联系老师" in welcome.reply
    assert all(f"{n}. {kb.entries[t].question}" in welcome.reply for n, t in enumerate(topics, 1))
    assert student.says("3").effects.topic == topics[2]


def test_help_lists_groups_and_a_group_lists_its_entries(kb: KnowledgeBase, matcher: Matcher) -> None:
    student = Student(kb, matcher, audience="undergrad")
    help_reply = student.says("帮助")
    groups = list(kb.conversation.groups.values())
    assert all(f"{n}. {g.title}" in help_reply.reply for n, g in enumerate(groups, 1))
    group = student.says("1")
    assert all(kb.entries[e].question in group.reply for e in groups[0].entries)
    assert student.says("2").effects.topic == groups[0].entries[1]


def test_a_menu_group_is_a_numbered_list(kb: KnowledgeBase, matcher: Matcher) -> None:
    button = next(b for top in kb.menu.button for b in top.sub_button if b.group)
    student = Student(kb, matcher, audience="ouc")
    listed = student.taps(button.key)
    entries = kb.conversation.groups[button.group].entries
    assert listed.effects.outcome == "menu" and all(kb.entries[e].question in listed.reply for e in entries)
    assert student.says("1").effects.topic == entries[0]


# --- who the student is ----------------------------------------------------------------------

def test_audience_is_asked_once_then_the_pending_question_answered_and_remembered(kb: KnowledgeBase, matcher: Matcher) -> None:
    student = Student(kb, matcher)
    asked = student.says(kb.entries["diploma-lost"].question)
    assert asked.effects.outcome == "audience" and asked.reply.startswith(kb.text("audience_question"))
    answered = student.says("2")
    assert answered.effects.topic == "diploma-lost" and answered.effects.audience == "graduate"
    assert answered.reply == kb.pages("diploma-lost", "graduate")[0]
    later = student.says(kb.entries["military-enlistment"].question)
    assert later.reply == kb.pages("military-enlistment", "graduate")[0]


def test_a_statement_sets_the_audience_and_is_acknowledged(kb: KnowledgeBase, matcher: Matcher) -> None:
    for said, audience in [("我是本科生", "undergrad"), ("我是研究生", "graduate"), ("我在国开读书", "ouc"), ("我是专科生。", "undergrad")]:
        outcome = Student(kb, matcher, audience="graduate" if audience != "graduate" else "ouc").says(said)
        assert outcome.effects.audience == audience and kb.label(audience) in outcome.reply, said
        assert outcome.effects.unanswered is None


def test_a_statement_answers_the_pending_question(kb: KnowledgeBase, matcher: Matcher) -> None:
    student = Student(kb, matcher)
    student.says(kb.entries["xueji-not-found"].question)
    answered = student.says("我在国开读书")
    assert answered.effects.topic == "xueji-not-found" and answered.effects.audience == "ouc"
    assert kb.pages("xueji-not-found", "ouc")[0] in answered.reply


def test_a_statement_with_a_question_answers_it_for_that_audience(kb: KnowledgeBase, matcher: Matcher) -> None:
    outcome = Student(kb, matcher).says("我是研究生，毕业证丢了怎么办")
    assert outcome.effects.audience == "graduate" and outcome.effects.topic == "diploma-lost"
    assert kb.pages("diploma-lost", "graduate")[0] in outcome.reply


def test_reset_forgets_the_audience_and_it_is_asked_again(kb: KnowledgeBase, matcher: Matcher) -> None:
    student = Student(kb, matcher, audience="graduate")
    reset = student.says("重新选择身份")
    assert reset.effects.audience == "" and "audience" not in student.session
    assert student.says(kb.entries["diploma-lost"].question).effects.outcome == "audience"


def test_a_question_naming_another_audience_answers_it_once(kb: KnowledgeBase, matcher: Matcher) -> None:
    student = Student(kb, matcher, audience="undergrad")
    other = student.says("研究生的毕业证丢了怎么办")
    assert other.effects.topic == "diploma-lost" and other.reply == kb.pages("diploma-lost", "graduate")[0]
    assert other.effects.audience is None and student.session["audience"] == "undergrad"
    assert student.says(kb.entries["diploma-lost"].question).reply == kb.pages("diploma-lost", "undergrad")[0]


def test_an_undergrad_asking_a_ouc_procedure_gets_told_whose_it_is_and_their_own_office(kb: KnowledgeBase, matcher: Matcher) -> None:
    outcome = Student(kb, matcher, audience="undergrad").says(kb.entries["stamped-proof-materials"].question)
    assert outcome.effects.topic == "stamped-proof-materials"
    note = outcome.reply.split("\n\n")[0]
    assert kb.label("ouc") in note and kb.label("undergrad") in note
    assert kb.profile.office_of("undergrad").name in note


def test_a_ouc_student_asking_a_university_procedure_gets_their_own_office(kb: KnowledgeBase, matcher: Matcher) -> None:
    outcome = Student(kb, matcher, audience="ouc").says(kb.entries["military-enlistment"].question)
    note = outcome.reply.split("\n\n")[0]
    assert outcome.effects.topic == "military-enlistment"
    assert kb.profile.office_of("ouc").name in note and kb.label("undergrad") in note
    assert outcome.reply.index("县级征兵办") > outcome.reply.index(kb.profile.office_of("ouc").name)


# --- 没用 and 转人工 --------------------------------------------------------------------------

def test_feedback_offers_the_next_best_answers_and_a_person_counted_against_the_entry(kb: KnowledgeBase, matcher: Matcher) -> None:
    student = Student(kb, matcher, audience="undergrad")
    question = kb.entries["xueli-query"].question
    student.says(question)
    feedback = student.says("没用")
    expected = [e for e, _ in matcher.rank(question) if e != "xueli-query" and kb.fits(e, "undergrad")][:3]
    assert len(expected) == 3
    assert feedback.effects.outcome == "feedback" and feedback.effects.feedback == "xueli-query"
    assert feedback.effects.unanswered == question and feedback.effects.unanswered_kind == "feedback"
    assert all(f"{n}. {kb.entries[e].question}" in feedback.reply for n, e in enumerate(expected, 1))
    assert "「人工」" in feedback.reply
    assert student.says("1").effects.topic == expected[0]


def test_feedback_alternatives_are_written_for_the_students_audience(kb: KnowledgeBase, matcher: Matcher) -> None:
    for audience in kb.profile.audiences:
        student = Student(kb, matcher, audience=audience)
        student.says(kb.entries["xueli-query"].question)
        offered = student.says("没用").effects.session["list"]["items"]
        assert offered and all(kb.fits(e, audience) for e in offered), (audience, offered)


@pytest.mark.parametrize("word", ["没用", "不对", "答非所问", "不是这个"])
def test_feedback_words_are_never_unanswered_questions(kb: KnowledgeBase, matcher: Matcher, word: str) -> None:
    alone = Student(kb, matcher).says(word)
    assert alone.effects.unanswered is None and alone.effects.feedback is None and alone.effects.outcome == "feedback"


def test_human_words_give_the_contacts_of_the_students_own_office(kb: KnowledgeBase, matcher: Matcher) -> None:
    for word in ("人工", "转人工", "找老师", "人工客服"):
        for audience in kb.profile.audiences:
            outcome = Student(kb, matcher, audience=audience).says(word)
            assert outcome.effects.outcome == "human" and kb.contact(audience) in outcome.reply, (word, audience)
    unknown = Student(kb, matcher).says("转人工")
    assert all(kb.contact(a) in unknown.reply for a in kb.profile.audiences)


def test_a_second_fallback_in_a_row_hands_over(kb: KnowledgeBase, matcher: Matcher) -> None:
    student = Student(kb, matcher, audience="graduate")
    first = student.says("食堂今天中午有什么菜")
    assert first.effects.outcome == "fallback" and kb.profile.office_of("graduate").name in first.reply
    second = student.says("宿舍几点关门")
    assert second.effects.outcome == "human" and kb.contact("graduate") in second.reply
    assert second.effects.unanswered == "宿舍几点关门"


def test_kf_mode_transfers_every_message_until_end_human(kb: KnowledgeBase, matcher: Matcher) -> None:
    student = Student(kb, matcher, handoff="kf")
    handed = student.says("转人工")
    assert handed.transfer and handed.reply is None and student.session["human"]
    for text in ("毕业证丢了怎么办", "2", "更多"):
        assert student.says(text).transfer, text
    ended = student.says("结束人工")
    assert not ended.transfer and ended.reply == kb.text("human_ended") and "human" not in student.session
    assert student.says(kb.entries["chsi-what"].question).effects.topic == "chsi-what"


def test_fallback_names_the_students_office_and_says_recorded_only_when_recorded(kb: KnowledgeBase, matcher: Matcher) -> None:
    unknown = Student(kb, matcher).says("食堂今天中午有什么菜")
    assert "已记录" in unknown.reply and unknown.effects.unanswered
    assert kb.profile.office_of("undergrad").name not in unknown.reply
    assert "完善回答" not in unknown.reply
    ouc = Student(kb, matcher, audience="ouc").says("食堂今天中午有什么菜")
    assert kb.profile.office_of("ouc").name in ouc.reply
    symbols = Student(kb, matcher).says("？？")
    if symbols.effects.outcome == "fallback":
        assert "已记录" not in symbols.reply and symbols.effects.unanswered is None
