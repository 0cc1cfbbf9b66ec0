"""The matcher with the real knowledge base and lexicon: words, typos, decisions, rules, robustness.

Probe phrases are written for these tests; none is copied from an evaluation set or from the
knowledge data (entries, out_of_domain.yaml).
"""
from __future__ import annotations

import dataclasses
import marshal
import os
import subprocess
import sys
import tempfile
import shutil
from pathlib import Path

import jieba
import pytest
import yaml

from knowledge.base import DATA_DIR, KnowledgeBase, load
from knowledge.examples import Item, QuestionSet, training_sets
from knowledge.matcher import ANSWER_AT, OOD, Match, Matcher, load_out_of_domain
from knowledge import text as text_module
from knowledge.text import LEXICON_DIR, MAX_CHARS, Analyzer, Lexicon, LexiconError, clean

ACTIONS = {"answer", "clarify", "fallback", "greeting", "thanks", "human", "help", "rule"}


@pytest.fixture(scope="module")
def matcher(kb: KnowledgeBase) -> Matcher:
    return Matcher(kb)


@pytest.fixture(scope="module")
def analyzer(matcher: Matcher) -> Analyzer:
    return matcher.analyzer


# --- words -------------------------------------------------------------------

DOMAIN_TERMS = [
    "学信网", "学信档案", "学籍", "学历", "学历认证", "电子注册备案表", "零散查询", "证件号码", "应征入伍",
    "保留学籍", "保留入学资格", "学历证明书", "曾用名", "预征对象登记表", "人像比对", "勘误",
]


@pytest.mark.parametrize("term", DOMAIN_TERMS)
def test_domain_terms_stay_whole(analyzer: Analyzer, term: str) -> None:
    sentence = f"老师我想了解{term}相关的事情"
    assert term in list(analyzer.tokenizer.cut(sentence, HMM=False))
    canonical = analyzer.canonical[term]
    assert canonical in analyzer.tokens(sentence)


def test_the_global_jieba_tokenizer_is_left_alone(analyzer: Analyzer) -> None:
    assert analyzer.tokenizer is not jieba.dt
    assert "预征对象登记表" in analyzer.tokenizer.FREQ
    assert not jieba.dt.initialized or "预征对象登记表" not in jieba.dt.FREQ


def _families() -> dict[str, list[str]]:
    return yaml.safe_load((LEXICON_DIR / "synonyms.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("head", list(_families()))
def test_every_word_of_a_synonym_family_reads_as_its_canonical_form(analyzer: Analyzer, head: str) -> None:
    expected = [] if head in analyzer.lexicon.stopwords else [head]
    for word in [head, *_families()[head]]:
        assert analyzer.tokens(str(word))[:1] == expected, word


def test_a_word_in_two_families_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "lexicon"
    shutil.copytree(LEXICON_DIR, folder)
    with (folder / "synonyms.yaml").open("a", encoding="utf-8") as f:
        f.write("\n补发证书: [补办]\n")
    with pytest.raises(LexiconError, match="补办"):
        Lexicon.load(folder)


def test_an_alias_whose_replacement_holds_latin_letters_is_rejected(tmp_path: Path) -> None:
    """Aliases turn Latin into Chinese; a replacement with Latin in it would be read as pinyin again."""
    folder = tmp_path / "lexicon"
    shutil.copytree(LEXICON_DIR, folder)
    raw = yaml.safe_load((folder / "aliases.yaml").read_text(encoding="utf-8"))
    raw["aliases"]["xxw"] = "学信网chsi"
    (folder / "aliases.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(LexiconError, match=r"\[xxw\].*no Latin letters"):
        Lexicon.load(folder)


def test_stop_words_and_punctuation_leave_only_content(analyzer: Analyzer) -> None:
    assert analyzer.tokens("老师好！请问，急急急～～") == []
    assert analyzer.tokens("ＡＢＣ　学信网！！") == ["abc", "学信网"]


# --- typos and homophones ----------------------------------------------------

@pytest.mark.parametrize(
    "typed, meant",
    [("学信王", "学信网"), ("薛信网", "学信网"), ("学藉", "学籍"), ("学厉认证", "学历认证"), ("学力认正", "学历认证"),
     ("必业证", "毕业证"), ("毕业正", "毕业证"), ("密马", "密码"), ("预征对像登记表", "预征对象登记表")],
)
def test_typed_homophones_read_as_the_term(analyzer: Analyzer, typed: str, meant: str) -> None:
    assert meant in analyzer.tokens(f"{typed}怎么弄")


def test_a_common_word_is_not_corrected_into_a_homophone_term(analyzer: Analyzer) -> None:
    assert "手机号" not in analyzer.tokens("收集材料")
    assert analyzer.tokens("入伍") == ["入伍"]


def test_a_short_piece_inside_other_words_is_not_corrected(analyzer: Analyzer) -> None:
    # 学生|征兵 is not 学生证, 高|考时 is not 考试: a common word crosses the piece's edge
    assert "学生证" not in analyzer.tokens("电大学生征兵表格盖章")
    assert "入伍" in analyzer.tokens("电大学生征兵表格盖章")
    assert "考试" not in analyzer.tokens("高考时填的信息")


def test_where_a_student_types_from_is_not_a_phone_number(analyzer: Analyzer) -> None:
    assert "手机号" not in analyzer.tokens("在手机上怎么注册学信网")
    assert "手机号" in analyzer.tokens("手机收不到验证码")


@pytest.mark.parametrize(
    "question, entry",
    [
        ("学信王上面查不到学籍", "xueji-not-found"),
        ("学力认正报告在哪申请", "xueli-certification"),
        ("毕业正弄丢了能补吗", "diploma-lost"),
        ("学藉信息不对找谁", "xueji-mismatch"),
        ("忘了学信网的密马怎么找回", "account-forgot-password"),
        ("入五前要办保留学藉吗", "military-enlistment"),
        ("身分证号被别人注册了", "account-id-taken"),
        ("必业证丢了", "diploma-lost"),
        ("预征对像登记表找谁盖章", "enlistment-form-stamp"),
    ],
)
def test_typos_still_find_their_topic(matcher: Matcher, question: str, entry: str) -> None:
    m = matcher.match(question)
    assert (m.action, m.entry_id) == ("answer", entry)


# --- decisions -----------------------------------------------------------------

@pytest.mark.parametrize(
    "question, entry",
    [
        ("毕业以后改名了，学信网的学历怎么绑定", "identity-change-after-graduation"),
        ("在读证明怎么开", "stamped-proof-materials"),
        ("退伍以后怎么复学", "military-enlistment"),
        ("学历认证报告在哪里申请", "xueli-certification"),
        ("国家开放大学本科毕业证丢了", "diploma-lost"),
        ("毕业证书能补办吗", "diploma-lost"),  # 补办 replaces a lost one ...
        ("改名以后毕业证可以换发吗", "diploma-reissue-after-change"),  # ... 换发 re-issues with new details
        ("在手机上怎么注册学信网", "account-register"),
        ("学信网是干啥的", "chsi-what"),
        ("学信网里学籍那一栏是空的", "xueji-not-found"),
    ],
)
def test_plain_questions_are_answered(matcher: Matcher, question: str, entry: str) -> None:
    m = matcher.match(question)
    assert (m.action, m.entry_id) == ("answer", entry)
    assert m.candidates[0] == entry and 0 < m.score <= 1


@pytest.mark.parametrize(
    "question",
    ["学生证丢了", "学生证丢了怎么补办", "转专业怎么申请", "校园卡丢了", "准考证丢了怎么办", "四六级成绩怎么查",
     "宿舍怎么调换", "奖学金什么时候发", "办休学要什么手续", "身份证丢了怎么补", "补考什么时候考",
     "身份证掉了要去哪补办"],
)
def test_near_misses_fall_back_instead_of_taking_the_nearest_entry(matcher: Matcher, question: str) -> None:
    m = matcher.match(question)
    assert m.action == "fallback" and m.entry_id is None


@pytest.mark.parametrize("question", ["选课密码忘了怎么办", "图书馆借书证丢了", "饭卡丢了去哪补", "实习证明怎么开", "我的学籍卡丢了", "门禁卡坏了"])
def test_a_question_naming_a_thing_no_entry_covers_falls_back(matcher: Matcher, question: str) -> None:
    assert matcher.match(question).action == "fallback"


@pytest.mark.parametrize("junk", ["？？", "1", "asdfgh", "😂😂😂", "。。。", "zzzz qqqq", "🐟"])
def test_junk_falls_back(matcher: Matcher, junk: str) -> None:
    assert matcher.match(junk).action == "fallback"


@pytest.mark.parametrize("vague", ["学历", "学籍", "毕业证", "查不到", "手机号"])
def test_a_vague_word_alone_is_clarified_not_answered(matcher: Matcher, vague: str) -> None:
    m = matcher.match(vague)
    assert m.action == "clarify" and m.entry_id is None
    assert 2 <= len(m.candidates) <= 4 and len(set(m.candidates)) == len(m.candidates)
    assert all(c in matcher.kb.entries for c in m.candidates)


def test_a_lone_character_does_not_make_a_vague_question_specific(matcher: Matcher) -> None:
    m = matcher.match("学籍能转吗")
    assert m.action in ("clarify", "fallback") and m.entry_id is None


def test_rank_is_sorted_and_explains_the_answer(matcher: Matcher) -> None:
    ranked = matcher.rank("学信网上查不到我的学籍")
    assert ranked[0][0] == "xueji-not-found"
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)


# --- what a question is about --------------------------------------------------------

@pytest.mark.parametrize("question", ["中职学籍能查吗", "财务处电话多少", "团支部证明怎么开", "辅导员电话是多少号码"])
def test_a_general_thing_qualified_by_a_noun_no_entry_uses_falls_back(matcher: Matcher, question: str) -> None:
    assert matcher.match(question).action == "fallback"


@pytest.mark.parametrize(
    "question, entry",
    [
        ("纸质毕业证弄丢了", "diploma-lost"),  # describing words do not make another thing
        ("函授毕业证丢了", "diploma-lost"),
        ("我表妹毕业证丢了能补吗", "diploma-lost"),
        ("学信网手机短信验证码一直收不到", "sms-code-not-received"),  # 手机短信: known parts
        ("搬家时把毕业证搞丢了", "diploma-lost"),  # a rare circumstance, the thing still named
        ("本科毕业证不见了", "diploma-lost"),  # an audience
    ],
)
def test_circumstances_around_a_known_thing_are_still_answered(matcher: Matcher, question: str, entry: str) -> None:
    m = matcher.match(question)
    assert (m.action, m.entry_id) == ("answer", entry)


@pytest.mark.parametrize("question", ["荣誉证书丢了能补吗", "技能证书丢了", "等级证书找不到了"])
def test_another_certificate_is_no_diploma(matcher: Matcher, question: str) -> None:
    assert matcher.match(question).entry_id is None


@pytest.mark.parametrize("question", ["教务系统密码忘了", "国开学习网密码忘了怎么办", "智慧树账号注册不了"])
def test_another_system_s_account_is_not_answered_as_the_chsi_account(matcher: Matcher, question: str) -> None:
    assert matcher.match(question).entry_id is None


@pytest.mark.parametrize("question", ["奖状弄丢了怎么办", "社团怎么报名", "托福报名入口", "为了复读能保留学籍吗"])
def test_a_rare_unknown_word_missing_the_entry_s_topic_is_not_answered(matcher: Matcher, question: str) -> None:
    m = matcher.match(question)
    assert m.action in ("clarify", "fallback") and m.entry_id is None


@pytest.mark.parametrize("question", ["档案丢了怎么补", "学位授予需要什么条件", "高中毕业证丢了怎么补", "留服认证要多久"])
def test_a_question_about_another_general_thing_is_not_answered(matcher: Matcher, question: str) -> None:
    assert matcher.match(question).entry_id is None


# --- small talk ------------------------------------------------------------------

@pytest.mark.parametrize(
    "message, kind",
    [("你好", "greeting"), ("在吗在吗", "greeting"), ("老师您好！", "greeting"), ("好的谢谢", "thanks"),
     ("收到，辛苦老师了", "thanks"), ("转人工", "human"), ("我想找真人聊", "human"), ("帮助", "help"),
     ("你能做什么", "help"), ("菜单", "help"), ("我找人工，你是机器人吗", "human"), ("有没有老师在线", "human"),
     ("叫你们老师过来", "human"), ("换一个老师吧", "human"), ("有哪些问题可以问你", "help"), ("不知道问什么", "help"),
     ("谢谢你的帮助", "thanks"), ("老师好，谢谢", "thanks"), ("早", "greeting"), ("拜拜", "thanks"),
     ("xiexie", "thanks"), ("xiè xie", "thanks"), ("zai ma", "greeting"), ("rengong", "human"), ("Thank you so much!", "thanks"),
     ("hello there", "greeting"), ("Can I talk to a real person?", "human"), ("what can you do", "help"), ("👋", "greeting"),
     ("👍👍", "thanks"), ("謝謝老師", "thanks"), ("泥嚎", "greeting"), ("蟹蟹", "thanks")],
)
def test_small_talk_is_recognised(matcher: Matcher, message: str, kind: str) -> None:
    m = matcher.match(message)
    assert (m.action, m.entry_id, m.candidates) == (kind, None, ())


def test_a_greeting_followed_by_a_question_goes_to_the_knowledge_base(matcher: Matcher) -> None:
    m = matcher.match("老师好，学信网上查不到我的学籍")
    assert (m.action, m.entry_id) == ("answer", "xueji-not-found")


def test_asking_for_chsi_customer_service_is_a_question_not_a_request_for_a_human(matcher: Matcher) -> None:
    m = matcher.match("学信网的人工客服怎么联系")
    assert (m.action, m.entry_id) == ("answer", "chsi-contact")


# --- rules -----------------------------------------------------------------------

def _rules(tmp_path: Path, rules: list[dict]) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"rules": rules}, allow_unicode=True), encoding="utf-8")
    return path


def test_keyword_rules_win_over_fuzzy_matching(kb: KnowledgeBase, tmp_path: Path) -> None:
    path = _rules(tmp_path, [
        {"keywords": ["毕业证丢了"], "match": "exact", "entry": "xueli-query"},
        {"keywords": ["学位证"], "match": "contains", "reply": "学位证问题请联系学位办。"},
        {"keywords": ["怎么用"], "match": "contains", "text": "help"},
    ])
    matcher = Matcher(kb, rules_path=path)
    exact = matcher.match("毕业证丢了！")
    assert (exact.action, exact.entry_id, exact.text_key, exact.text) == ("rule", "xueli-query", None, None)
    assert matcher.match("毕业证丢了怎么办").entry_id == "diploma-lost"  # exact means the whole message
    contains = matcher.match("我的学位证丢了怎么办")
    assert (contains.action, contains.entry_id, contains.text) == ("rule", None, "学位证问题请联系学位办。")
    assert matcher.match("这个公众号怎么用").text_key == "help"


def test_the_longest_contains_keyword_wins(kb: KnowledgeBase, tmp_path: Path) -> None:
    path = _rules(tmp_path, [
        {"keywords": ["学信网"], "match": "contains", "entry": "chsi-what"},
        {"keywords": ["学信网客服"], "match": "contains", "entry": "chsi-contact"},
    ])
    assert Matcher(kb, rules_path=path).match("学信网客服在哪").entry_id == "chsi-contact"


@pytest.mark.parametrize(
    "rule, problem",
    [
        ({"keywords": ["x"], "entry": "no-such-entry"}, "no-such-entry"),
        ({"keywords": ["x"], "text": "no_such_text"}, "no_such_text"),
        ({"keywords": ["x"], "entry": "diploma-lost", "reply": "两个目标"}, "exactly one"),
        ({"keywords": ["？"], "reply": "空"}, "empty"),
        ({"keywords": ["x"], "match": "fuzzy", "reply": "?"}, "match"),
    ],
)
def test_broken_rules_are_rejected_when_the_matcher_is_built(kb: KnowledgeBase, tmp_path: Path, rule: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Matcher(kb, rules_path=_rules(tmp_path, [rule]))


def test_the_shipped_rules_load_and_fire(matcher: Matcher) -> None:
    assert matcher.rules
    m = matcher.match("学信网")
    assert (m.action, m.entry_id) == ("rule", "chsi-what")


# --- audience ----------------------------------------------------------------------

@pytest.mark.parametrize(
    "question, audience",
    [("我是研究生，毕业证丢了", "graduate"), ("国开的学生，学籍查不到", "ouc"), ("本科毕业证丢了", "undergrad"),
     ("国家开放大学本科毕业证丢了", "ouc"), ("毕业证丢了", None), ("你好", None)],
)
def test_audience_comes_from_the_profile_hints(matcher: Matcher, question: str, audience: str | None) -> None:
    assert matcher.match(question).audience == audience


# --- robustness ---------------------------------------------------------------------

@pytest.mark.parametrize(
    "message",
    ["", "   ", "\n\t", "学" * 10_000, "学信网查不到学籍" * 1_500, "😂" * 500, "hello world 123", "<xml>]]></xml>",
     "\x00\x01", "ＡＳＤＦ", "？！。，、"],
)
def test_any_input_gets_a_decision(matcher: Matcher, message: str) -> None:
    m = matcher.match(message)
    assert isinstance(m, Match) and m.action in ACTIONS and 0.0 <= m.score <= 1.0
    assert len(m.candidates) <= 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.action = "answer"  # type: ignore[misc]


def test_empty_and_blank_messages_fall_back(matcher: Matcher) -> None:
    assert matcher.match("").action == matcher.match("  ").action == "fallback"


@pytest.mark.parametrize(
    "message, kind",
    [("有没有真人老师可以聊一下", "human"), ("想让老师直接帮我看看", "human"), ("你都可以回答什么类型的问题", "help")],
)
def test_a_request_for_a_person_or_help_wins_when_the_rest_has_no_answer(matcher: Matcher, message: str, kind: str) -> None:
    assert matcher.match(message).action == kind


def test_a_greeting_in_front_of_an_unanswerable_question_falls_back(matcher: Matcher) -> None:
    assert matcher.match("老师您好 体育馆晚上几点关门").action == "fallback"


# --- normalisation: traditional characters, pinyin, English, long stories -------------

def test_traditional_characters_read_as_simplified(analyzer: Analyzer) -> None:
    assert analyzer.normalise("學信網畢業證") == "学信网毕业证"


@pytest.mark.parametrize(
    "typed, meant",
    [("CHSI", "学信网"), ("xuexinwang", "学信网"), ("Xue Xin Wang", "学信网"), ("biyezheng", "毕业证"), ("biyezhengdiule", "丢了"),
     ("student status", "学籍"), ("registered", "注册"), ("lost my graduation certificates", "毕业证书")],
)
def test_latin_aliases_become_the_chinese_term(analyzer: Analyzer, typed: str, meant: str) -> None:
    assert meant in analyzer.normalise(f"{typed} 怎么办")


def test_an_english_alias_is_found_only_as_whole_words(analyzer: Analyzer) -> None:
    assert analyzer.lexicon.normalise("information platform") == "information platform"  # no "form" inside


def test_tone_marks_are_read_as_plain_pinyin(analyzer: Analyzer) -> None:
    assert analyzer.syllables(analyzer.normalise("bì yè zhèng")) == ["bi", "ye", "zheng"]


def test_pypinyin_s_phrase_dictionary_is_never_loaded() -> None:
    from pypinyin.constants import PHRASES_DICT

    assert len(PHRASES_DICT) == 0  # 45 MB per process that the matcher does not read


def test_pinyin_typed_by_a_student_meets_the_pinyin_of_the_entries(analyzer: Analyzer) -> None:
    assert analyzer.syllables("diule") == ["diu", "le"]
    assert analyzer.syllables("丢了") == ["diu", "le"]
    assert analyzer.syllables("qwrtz") == []  # not pinyin: no syllables


@pytest.mark.parametrize(
    "question, entry",
    [
        ("我的畢業證書搬家時弄丟了，還能補辦嗎", "diploma-lost"),  # traditional characters
        ("學信網的密碼忘記了怎麼重新設置", "account-forgot-password"),
        ("biyezheng diule zenme buban", "diploma-lost"),  # pinyin
        ("xuexinwang mima wangle", "account-forgot-password"),
        ("chsi password forgot", "account-forgot-password"),  # English
        (
            "老师您好，打扰了。我是前年从咱们学校本科毕业的，上个月搬家的时候发现毕业证书弄丢了，"
            "翻遍了都没找到，现在新单位入职要看原件，我特别着急，学校能补发吗",
            "diploma-lost",
        ),  # a long story
        (
            "您好，我今年考上了研究生，导师让我们上学信网看看自己的学籍，我登录了好几次，"
            "高等教育信息那一栏里一直什么都没有，同学的都已经有了，这种情况正常吗，需要找谁",
            "xueji-not-found",
        ),
    ],
)
def test_other_forms_of_a_known_question_reach_its_entry(matcher: Matcher, question: str, entry: str) -> None:
    m = matcher.match(question)
    assert (m.action, m.entry_id) == ("answer", entry)


# --- out of domain ---------------------------------------------------------------------

@pytest.mark.parametrize(
    "question",
    ["自考本科的毕业申请每年几月份办", "自学考试的课程成绩能保留几年", "考研初试的分数什么时候公布", "研招网上的调剂志愿能改几次",
     "成人高考函授站在哪", "学籍状态显示注销是啥意思啊", "[图片]", "[语音]", "[表情]"],
)
def test_domain_adjacent_questions_and_media_placeholders_fall_back(matcher: Matcher, question: str) -> None:
    m = matcher.match(question)
    assert m.action == "fallback" and m.entry_id is None


def test_the_out_of_domain_examples_are_data_the_model_learns_as_a_class(matcher: Matcher) -> None:
    examples = load_out_of_domain(LEXICON_DIR)
    assert len(examples) >= 200 and "[图片]" in examples
    assert OOD in matcher.model.classes


def test_a_broken_out_of_domain_file_is_rejected(kb: KnowledgeBase, tmp_path: Path) -> None:
    folder = tmp_path / "lexicon"
    shutil.copytree(LEXICON_DIR, folder)
    (folder / "out_of_domain.yaml").write_text("examples: 自考\n", encoding="utf-8")
    with pytest.raises(LexiconError, match="out_of_domain"):
        Matcher(kb, lexicon_dir=folder)


# --- learning from the data --------------------------------------------------------------

def test_answers_above_the_threshold_are_right_on_held_out_sets(kb: KnowledgeBase) -> None:
    """Calibration: a matcher that never saw a labelled set answers it right at least 97% of the
    time when it answers (its calibrated confidence is at or above ANSWER_AT)."""
    sets = training_sets()
    held_out = [s for s in sets if s.name in ("unseen-questions", "fresh-questions:holdout")]
    assert held_out, "the labelled sets in bench/ are missing"
    answered = right = 0
    for held in held_out:
        m = Matcher(kb, sets=[s for s in sets if s is not held], cache=False)
        for item in held.in_domain + held.out_of_domain:
            decision = m.match(item.q)
            if decision.action == "answer":
                assert decision.score >= ANSWER_AT
                answered += 1
                right += decision.entry_id in item.expect
    assert answered >= 150
    assert right / answered >= 0.97


def _knowledge_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "knowledge"
    shutil.copytree(DATA_DIR, folder, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return folder


def test_a_similar_question_added_by_staff_changes_the_answer_after_a_reload(tmp_path: Path) -> None:
    question = "紫色回执单被狗叼走了"
    folder = _knowledge_copy(tmp_path)
    before = Matcher(load(folder, catalogue=None), lexicon_dir=folder / "lexicon", rules_path=folder / "rules.yaml")
    assert before.match(question).entry_id != "enlistment-form-stamp"
    path = folder / "entries" / "enlistment-form-stamp.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["entry"]["similar"].append(question)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    after = Matcher(load(folder, catalogue=None), lexicon_dir=folder / "lexicon", rules_path=folder / "rules.yaml")
    assert (after.match(question).action, after.match(question).entry_id) == ("answer", "enlistment-form-stamp")


def test_a_negative_example_added_by_staff_makes_a_question_fall_back(tmp_path: Path) -> None:
    question = "学信网上的学籍照片可以换成新拍的证件照吗"
    folder = _knowledge_copy(tmp_path)
    path = folder / "lexicon" / "out_of_domain.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["examples"] += [question, "学信网上的学籍照片能不能换一张新的证件照", "想把学籍照片换成好看点的证件照"]
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    after = Matcher(load(folder, catalogue=None), lexicon_dir=folder / "lexicon", rules_path=folder / "rules.yaml")
    assert after.match(question).action == "fallback"


PROBES = ["毕业证丢了", "学信网查不到学籍", "改名以后学历怎么办", "考研分数线", "学历", "入伍保留学籍", "chsi mima", "你好"]


def test_the_same_data_gives_the_same_decisions_twice(kb: KnowledgeBase) -> None:
    first, second = Matcher(kb, cache=False), Matcher(kb, cache=False)
    assert [first.match(q) for q in PROBES] == [second.match(q) for q in PROBES]
    assert (first.model.coef == second.model.coef).all() and (first.model.decider == second.model.decider).all()


def test_the_model_digest_is_the_same_in_processes_with_other_hash_seeds() -> None:
    """A digest that depends on set order would miss the cache in every new worker (and retrain at start-up)."""
    code = "from knowledge.base import load; from knowledge.matcher import Matcher; print(Matcher(load()).digest)"
    root = Path(__file__).resolve().parent.parent
    digests = {
        subprocess.run([sys.executable, "-c", code], cwd=root, env={**os.environ, "PYTHONHASHSEED": seed},
                       capture_output=True, text=True, check=True, timeout=120).stdout.strip()
        for seed in ("1", "2")
    }
    assert len(digests) == 1 and len(digests.pop()) == 32


def test_small_talk_no_phrase_names_is_learned_from_the_labelled_sets(kb: KnowledgeBase) -> None:
    purr = QuestionSet("purr", smalltalk=[Item(q, kind="greeting") for q in ("喵喵", "喵喵喵", "喵喵 喵", "喵 喵喵喵")])
    question = "喵喵喵喵喵"
    without, learned = Matcher(kb, sets=training_sets(), cache=False), Matcher(kb, sets=[*training_sets(), purr], cache=False)
    assert learned._small_talk(question)[0] is None  # no phrase names it
    assert without.match(question).action == "fallback"
    assert learned.match(question).action == "greeting"
    assert learned.match("喵喵喵 学信网查不到学籍").action == "answer"  # a question after it is still answered


def test_a_long_message_is_kept_by_what_is_read_of_it(kb: KnowledgeBase) -> None:
    """Only the first MAX_CHARS * 2 characters are read: the caches keep only those, so 60 KB messages cost them no more."""
    matcher = Matcher(kb)
    head = ("毕业证丢了怎么补办" * 200)[: MAX_CHARS * 2]
    first, second = head + "甲" * 60_000, head + "乙" * 60_000
    cleaned = text_module._clean.cache_info().hits
    assert clean(first) == clean(second) == clean(head)
    assert text_module._clean.cache_info().hits >= cleaned + 2
    decided = matcher._memo.cache_info()
    assert matcher.match(first) == matcher.match(second)
    after = matcher._memo.cache_info()
    assert (after.misses, after.hits) == (decided.misses + 1, decided.hits + 1)


def test_a_cached_model_decides_as_the_freshly_trained_one(kb: KnowledgeBase) -> None:
    fresh, cached = Matcher(kb, cache=False), Matcher(kb)
    Matcher(kb)  # the cache now certainly holds this model
    assert [fresh.match(q) for q in PROBES] == [Matcher(kb).match(q) for q in PROBES] == [cached.match(q) for q in PROBES]


def test_confidence_is_a_probability_and_rank_covers_every_entry(matcher: Matcher, kb: KnowledgeBase) -> None:
    sure, domain, ranked = matcher.confidence("毕业证丢了")
    assert 0.0 <= sure <= 1.0 and 0.0 <= domain <= 1.0
    assert {entry_id for entry_id, _ in ranked} == set(kb.entries)
    assert abs(sum(p for _, p in ranked) + (1 - domain) - 1.0) < 1e-6


def test_a_retrain_reads_each_text_s_terms_from_the_last_one_and_survives_a_broken_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # the caches go here
    (tmp_path / "tmp").mkdir()
    folder = _knowledge_copy(tmp_path)
    args = dict(lexicon_dir=folder / "lexicon", rules_path=folder / "rules.yaml")
    first = Matcher(load(folder, catalogue=None), **args)
    (terms_file,) = (tmp_path / "tmp").glob("xueji-terms-*.marshal")
    kept = marshal.loads(terms_file.read_bytes())
    assert first.kb.entries["diploma-lost"].question in kept
    terms_file.write_bytes(b"\x00not marshal")
    for model_file in (tmp_path / "tmp").glob("xueji-matcher-*.npz"):
        model_file.unlink()
    second = Matcher(load(folder, catalogue=None), **args)
    questions = ["毕业证丢了怎么办", "学信网查不到学籍", "食堂几点开门", "学籍"]
    assert [second.match(q) for q in questions] == [first.match(q) for q in questions]
    assert marshal.loads(terms_file.read_bytes()).keys() == kept.keys()  # written again, whole


def test_a_retrain_from_kept_terms_learns_what_reading_every_text_afresh_learns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kb: KnowledgeBase
) -> None:
    """Texts whose Latin spells the pinyin of a training word (biyezheng) are read again once the
    words are known, and kept under the keys they spell: reused, they must give the same model."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    wide = "ｂｉｙｅｚｈｅｎｇ ｄｉｕｌｅ ｚｅｎｍｅ ｂａｎ"  # full-width Latin is Latin too, once NFKC has read it
    sets = [*training_sets(), QuestionSet("wide", in_domain=[Item(q=wide, expect=("diploma-lost",))])]
    Matcher(kb, sets=sets)
    (terms_file,) = tmp_path.glob("xueji-terms-*.marshal")
    kept = marshal.loads(terms_file.read_bytes())
    spelled = [key for key in kept if isinstance(key, tuple)]
    assert spelled and all(key[1] for key in spelled)
    assert any(key[0] == wide for key in spelled)
    assert any(kept[key] != kept[key[0]] for key in spelled)  # the second reading is another reading
    for model_file in tmp_path.glob("xueji-matcher-*.npz"):
        model_file.unlink()
    again, fresh = Matcher(kb, sets=sets), Matcher(kb, sets=sets, cache=False)
    assert again.model.vocab == fresh.model.vocab
    assert (again.model.coef == fresh.model.coef).all() and (again.model.decider == fresh.model.decider).all()


def test_preparing_training_imports_scikit_learn_in_the_background_once() -> None:
    code = (
        "import sys, threading; from knowledge import matcher\n"
        "assert 'sklearn' not in sys.modules\n"
        "matcher.prepare_training(); first = matcher._importing; matcher.prepare_training()\n"
        "assert matcher._importing is first and first is not threading.current_thread()\n"
        "first.join(60); print('sklearn.linear_model' in sys.modules, 'sklearn.model_selection' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]


def test_a_repeated_message_gets_the_kept_decision_and_a_matcher_without_memo_decides_alike(kb: KnowledgeBase) -> None:
    kept, plain = Matcher(kb), Matcher(kb, memo=0)
    first = kept.match("毕业证丢了怎么补办")
    assert kept.match("毕业证丢了怎么补办") is first  # the same object: decided once
    assert plain.match("毕业证丢了怎么补办") == first and plain.match("毕业证丢了怎么补办") is not plain.match("毕业证丢了怎么补办")


def test_processes_building_the_same_new_model_at_once_train_it_once(tmp_path: Path) -> None:
    """Workers starting together on a fresh host: one trains, the others wait for its model."""
    code = (
        "import json, sys; from knowledge.base import load; from knowledge.matcher import Matcher\n"
        "kb = load(); sys.stdin.read(1)\n"  # everything imported and loaded: start building together
        "print(json.dumps(Matcher(kb, sets=[]).trained))\n"
    )
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # an empty cache folder: nothing trained yet
    workers = [subprocess.Popen([sys.executable, "-c", code], cwd=root, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for worker in workers:
        worker.stdin.write("go")
        worker.stdin.flush()
    results = [worker.communicate(timeout=300) for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), [err for _, err in results]
    assert sorted(out.strip() for out, _ in results) == ["false", "false", "true"]
    assert len(list(tmp_path.glob("xueji-matcher-*.npz"))) == 1


def test_a_cache_folder_that_cannot_be_made_leaves_the_caches_in_the_temp_folder(tmp_path: Path) -> None:
    from knowledge import cache

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    try:
        cache.use(tmp_path / "made")
        assert cache.path("x") == tmp_path / "made" / "x" and (tmp_path / "made").is_dir()
        cache.use(blocker / "cache")
        assert cache.path("x") == Path(tempfile.gettempdir()) / "x"
    finally:
        cache.use(None)


def test_the_cache_keeps_the_most_recently_used_models_and_prunes_the_rest(kb: KnowledgeBase, tmp_path: Path) -> None:
    """A cache folder that outlives restarts must not keep a model for every staff edit ever made."""
    from knowledge import cache
    from knowledge import matcher as matcher_module

    stale = []
    for i in range(matcher_module.KEEP_MODELS + 4):
        file = tmp_path / f"xueji-matcher-{i:032x}.npz"
        file.write_bytes(b"an old model")
        os.utime(file, (1_000_000 + i, 1_000_000 + i))
        stale.append(file)
    in_flight = tmp_path / f"xueji-matcher-{'f' * 32}.12345.tmp.npz"  # another process still writing
    in_flight.write_bytes(b"partial")
    os.utime(in_flight, (1, 1))
    cache.use(tmp_path)
    try:
        cache.used(stale[0])  # the oldest file was just read: it is kept
        built = Matcher(kb, sets=[])
        assert built.trained
        models = set(tmp_path.glob("xueji-matcher-" + "?" * 32 + ".npz"))
        assert len(models) == matcher_module.KEEP_MODELS
        assert matcher_module._cache_path(built.digest) in models and stale[0] in models
        assert not set(stale[1:5]) & models, "the least recently used go first"
        assert in_flight.exists()
        own = matcher_module._cache_path(built.digest)
        os.utime(own, (1, 1))
        assert Matcher(kb, sets=[]).trained is False
        assert own.stat().st_mtime > 1_000_000, "loading a model counts as using it"
    finally:
        cache.use(None)
