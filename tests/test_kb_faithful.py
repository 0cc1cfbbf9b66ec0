"""Each answer carries its seed's key facts: numbers, deadlines, document names, offices.

One table, written from the seeds by hand: (entry id, audience of the variant or
None for the default answer, facts the rendered answer must contain). A second
test checks that every fact in the table is itself in the seeds or the school
profile, so the table cannot drift into invented facts.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from knowledge.base import CATALOGUE, DATA_DIR, check

SEEDS_DIR = CATALOGUE.parent / "seeds"

GRAD_OFFICE = ["研究生院学位办", "0431-85583206"]
CHSI = ["010-67410388", "kefu@chsi.com.cn"]
CHSI_HELP = "https://account.chsi.com.cn/account/help/index.jsp"

FACTS: list[tuple[str, str | None, list[str]]] = [
    # --- 学信网账号与学籍 ---
    ("account-register", None, ["“学信网”公众号", "【学信档案】", "【注册学信网账号】", "手机号、短信验证码、密码、姓名、身份证号码",
                                "【立即注册】", "【高等教育信息】", "【学籍】栏目", "录取照片", "学籍状态", "校验码有时间限制",
                                "未来数十年将经常性使用", "https://www.chsi.com.cn/", "学校学籍学历管理部门"]),
    ("account-register", "graduate", ["【我已阅读并同意】", "即可获取学信网账号", "【学籍】栏目", *GRAD_OFFICE]),
    ("xueji-self-check", None, ["邮箱、手机号或者身份证号任意一项", "身份核验", "2001", "2008年9月",
                                "录取照片、姓名、出生日期、证件号码、院校名称、专业名称、学籍状态", "学历照片、系所如无内容",
                                "截图保存", "高考时的报名信息", "所有学籍信息变更申请须在大学在校期间提出",
                                "学校学籍学历管理部门", *GRAD_OFFICE]),
    ("xueji-not-found", None, ["正规高等学历教育", "国家承认的高等教育学历文凭资格", "两种情况", "(1)", "(2)", "信息绑定",
                               "9月-10月", "学校学籍学历管理部门"]),
    ("xueji-not-found", "graduate", ["(1)", "(2)", "9月-10月底", *GRAD_OFFICE]),
    ("xueji-not-found", "ouc", ["国家开放大学", "生僻字", "音同字不同", "录取通知书", "截图", "考生号", "国开学籍科", "招办"]),
    ("xueji-mismatch", None, ["专业、层次、学制、学习形式、学籍状态", "看不到任何信息", "学校学籍学历管理部门"]),
    ("xueji-mismatch", "graduate", ["姓名、身份证号、学校名称、专业、层次、学制、学习形式、学籍状态", "看不到任何信息", *GRAD_OFFICE]),
    ("identity-change-in-school", None, ["正当、合理、充分的理由", "具有法定效力的证明材料", "弄虚作假", "录取数据",
                                         "生源地省级招生部门", "恢复绑定和查询", "学校学籍学历管理部门"]),
    ("identity-change-in-school", "graduate", ["区分不同情形", "违规入学", "具有法定效力的证明材料", "学信网客服",
                                               "010-67410388", *GRAD_OFFICE]),
    # --- 应征入伍 ---
    ("military-enlistment", None, ["《应征入伍普通高等学校录取新生保留入学资格申请表》", "县级征兵办", "入伍通知复印件", "公函",
                                   "武装部", "入伍离校前", "保留学籍", "退役后2年", "退役两年内", "《普通高等学校学生管理规定》",
                                   "放弃入学资格或退学处理", "学校学籍学历管理部门"]),
    ("military-enlistment", "graduate", ["《长春理工大学研究生保留入学资格申请表》", "《长春理工大学研究生保留学籍申请表》",
                                         "录取通知书", "身份证(户口簿)", "入伍通知书", "受委托人身份证", "退役后2年",
                                         "教育部令第41号", "退役当年或者第2年", "放弃入学资格或退学处理", *GRAD_OFFICE]),
    ("enlistment-form-stamp", None, ["国家开放大学", "大学生预征对象登记表", "分部或班主任", "在校期间表现", "一式两份",
                                     "省校章", "总部盖章"]),
    # --- 学历证书 ---
    ("diploma-conditions", None, ["《普通高等学校学生管理规定》", "离校前发给毕业证书", "准予结业", "结业证书", "由学校规定",
                                  "印制和发放"]),
    ("diploma-conditions", "graduate", ["第三十二条、第三十三条", "《长春理工大学研究生学籍管理办法》", "长理工研字〔2020〕33号",
                                        "第四十一条", "第四十六条", "最长学习年限", "不再颁发毕业证书", *GRAD_OFFICE]),
    ("diploma-lost", None, ["《高等学校学生学籍学历电子注册办法》", "一份学历证书", "《普通高等学校学生管理规定》", "学历证明书",
                            "同等效力", "求职就业、职称评定", "学校学籍学历管理部门"]),
    ("diploma-lost", "graduate", ["第三十八条", "教育部令第41号", "学历证明书", "同等效力", *GRAD_OFFICE]),
    ("diploma-lost", "ouc", ["国家开放大学", "只可补办毕业证明书"]),
    ("diploma-reissue-after-change", None, ["国家开放大学", "不可以", "过去时", "现在时", "基本信息变更证明", "户籍卡",
                                            "公安机关开具的证明"]),
    ("diploma-progress", None, ["国家开放大学", "学历证书查询", "学号", "浙江", "总部已邮寄",
                                "法学、数学与应用数学、水利水电、公共事业管理(卫生事业管理)", "5月底、11月底", "10个工作日",
                                "15个工作日", "2016年", "未毕业"]),
    # --- 学历查询与认证 ---
    ("xueli-query", None, ["2001年", "含学历证明书", "落款日期", "2024年6月30日零点", "零散查询", "【中国高等教育学历证书查询】",
                           "证书编号", "本人查询", "身份信息核验", "【学历信息】栏目"]),
    ("xueli-query", "graduate", ["2001年", "2025年6月30日零点", "零散查询", "证书编号", *GRAD_OFFICE]),
    ("xueli-query", "ouc", ["国家开放大学", "CPS教务管理系统中央平台", "已对接的历史信息", "零散查询", "证书编号", "验证码"]),
    ("xueli-certification", None, ["《教育部学历证书电子注册备案表》", "《中国高等教育学历认证报告》", "电子认证", "书面认证",
                                   "效力完全相同", "2018年7月1日", "2002年", "2000届(含)及以前", "不提供查询和绑定",
                                   "免费在线申请学历认证电子报告", "选择项目", "上传电子材料", "确认/支付", "不认证《学位证书》",
                                   "可申请的学历", "2019年5月1日", "1个月左右", "1-2月、6-8月"]),
    ("xueli-not-found", None, ["2001届(含)以后", "两种情况", "(1)", "(2)", "信息绑定", "落款日期", "学校学籍学历管理部门"]),
    ("xueli-not-found", "graduate", ["2001届(含)以后", "学校未注册研究生学历信息", "落款日期", *GRAD_OFFICE]),
    ("identity-change-after-graduation", None, ["不得变更证书内容及注册信息", "曾用名", "学历注册时使用的身份证号", "人工审核",
                                                "联系毕业高校", "《教育部学历证书电子注册备案表》", "户籍信息变更证明"]),
    ("identity-change-after-graduation", "graduate", ["教学〔2014〕11号", "第十九条", "曾用名", "人工审核",
                                                      "《教育部学历证书电子注册备案表》", *GRAD_OFFICE]),
    ("xueli-registration-error", None, ["书面申请", "学历勘误申请", "省级教育行政部门复核确认", "全国硕士研究生招生考试",
                                        "教学〔2014〕11号", "第十条", "省级招生部门", "学籍异动", *GRAD_OFFICE,
                                        "学校学籍学历管理部门"]),
    ("xueli-suddenly-unavailable", None, ["人像比对", "学历照片、录取照片、居民身份证照片", "次年预计毕业生", "比对存疑或不确定",
                                          "查询限制", "身份信息复核", "恢复在线查验功能", *GRAD_OFFICE]),
    ("xueli-nonstandard-id", None, ["国家开放大学", "15位或18位", "军官证", "士兵证", "零散查询", "教务系统内注册的身份证号",
                                    "一位都不能错", "新的手机号", "其他", "查看该学籍的在线验证报告", "教育部学历证书电子备案表"]),
    # --- 学信网账号问题 ---
    ("account-forgot-password", None, ["学校对个人的账号和密码并无管理权限", "清零和重置", "自行找回密码", "别无他法",
                                       "找回用户名", "捆绑的手机号码", *CHSI, CHSI_HELP]),
    ("account-phone-taken", None, ["已注册使用过", "“学信网”公众号", "人工客服", "姓名、手机号码、证件号码",
                                   "本人手持证件照片", "重新注册", "chsi_chesicc"]),
    ("account-id-taken", None, ["学校无权限解决", "找回用户名", "我要重新注册", "【立即注册】", "旧账号将被注销",
                                "征兵、研招报名", "【解决办法】", "APP", "客服协助验证", "证件重复-客服审核", *CHSI, CHSI_HELP]),
    ("chsi-contact", None, [*CHSI, CHSI_HELP, "chsi_chesicc"]),
    ("school-contact", None, ["学校学籍学历管理部门", "研究生院学位办", "卫星路7089号", "401-5室", "0431-85583206", "邹老师",
                              "010-67410388"]),
    # --- 国开证明材料 ---
    ("foreign-language-proof", None, ["国家开放大学", "如实翻译", "翻译件", "教务处、学生处、学习支持服务中心", "处章",
                                      "国开总部学籍科", "寄回省级广播电视大学", "亲自办理", "电话沟通"]),
    ("stamped-proof-materials", None, ["国家开放大学", "在读证明", "身份证原件", "学生证原件", "毕业证原件", "委托人",
                                       "身份证复印件", "委托张三", "分部处章", "一般不超过5份", "在校期间表现证明"]),
    # --- extras ---
    ("chsi-what", None, ["教育部指定", "唯一官方网站", "学年注册", "毕业图像信息的校对", "应征入伍的报名", "专业满意度的调查",
                         "https://www.chsi.com.cn/"]),
    ("kaoyan-chsi-account", None, ["中国研究生招生信息网", "全国征兵网", "研招网上报名", "兵役登记", "应征入伍", "无需再次注册",
                                   "征兵、研招报名"]),
    ("account-register-tips", None, ["空格", "大写的X", "错别字", "特殊符号", "出生日期", "不可修改", "找不回用户名"]),
    ("sms-code-not-received", None, ["免费获取", "图片上的验证码", "屏蔽垃圾消息", "时间限制"]),
    ("account-phone-change", None, ["追回或重置密码", "捆绑的手机号码", CHSI_HELP]),
    ("xueji-lifelong-archive", None, ["终身电子档案", "面向社会开放", "毕业、就业、考研深造", "学历证书与学位证书",
                                      "两证的正确性"]),
]

_WIDTH = str.maketrans({"（": "(", "）": ")", "：": ":", "，": ",", "“": '"', "”": '"'})


def norm(text: str) -> str:
    """Compare text ignoring whitespace, full-/half-width brackets and the seeds' markup."""
    text = re.sub(r"\[image:[^\]]*\]", "", text.replace("**", "").replace("\\_", "_"))
    return re.sub(r"\s+", "", text).translate(_WIDTH)


@pytest.fixture(scope="module")
def kb():
    kb, problems = check()
    assert kb is not None and not problems, problems
    return kb


@pytest.mark.parametrize(("entry_id", "audience", "facts"), FACTS, ids=[f"{e}-{a or 'default'}" for e, a, _ in FACTS])
def test_answer_holds_the_seed_facts(kb, entry_id, audience, facts):
    if audience is not None:
        assert audience in {v.audience for v in kb.entries[entry_id].variants}, f"{entry_id} has no {audience} variant"
    text = norm(kb.render(entry_id, audience))
    missing = [fact for fact in facts if norm(fact) not in text]
    assert not missing, f"{entry_id} [{audience or 'default'}] misses {missing}"


def test_facts_come_from_the_seeds_or_the_profile():
    corpus = norm("\n".join(p.read_text(encoding="utf-8") for p in SEEDS_DIR.glob("*.txt")))
    corpus += norm((DATA_DIR / "school.yaml").read_text(encoding="utf-8"))
    invented = sorted({f for _, _, facts in FACTS for f in facts if norm(f) not in corpus})
    assert not invented, f"facts not in any seed: {invented}"


def test_table_covers_every_entry(kb):
    assert {e for e, _, _ in FACTS} == set(kb.entries)


def test_every_variant_is_checked(kb):
    checked = {(e, a) for e, a, _ in FACTS}
    for entry in kb.entries.values():
        for variant in entry.variants:
            assert (entry.id, variant.audience) in checked, f"{entry.id} [{variant.audience}] has no fact check"


def test_audience_variants_follow_their_seed(kb):
    """The 研究生 answer names 研究生院学位办; the 本专科 default does not, and vice versa."""
    for entry in kb.entries.values():
        if any(v.audience == "graduate" for v in entry.variants):
            assert "研究生院学位办" in kb.render(entry.id, "graduate"), entry.id
            assert "研究生院学位办" not in kb.render(entry.id), entry.id


# --- the school profile drives every office detail ---------------------------------

def _copy_knowledge(tmp_path):
    folder = tmp_path / "knowledge"
    shutil.copytree(DATA_DIR, folder, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return folder


def _edit_profile(folder, edit):
    path = folder / "school.yaml"
    profile = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(profile)
    path.write_text(yaml.safe_dump(profile, allow_unicode=True, sort_keys=False), encoding="utf-8")


def test_changed_graduate_phone_reaches_the_answers(tmp_path):
    folder = _copy_knowledge(tmp_path)
    old = "0431-85583206"

    def edit(profile):
        assert profile["audiences"]["graduate"]["office"]["phone"] == old
        profile["audiences"]["graduate"]["office"]["phone"] = "0431-12345678"

    _edit_profile(folder, edit)
    kb, problems = check(folder, CATALOGUE)
    assert kb is not None and not problems, problems
    contact = kb.render("school-contact")
    assert "0431-12345678" in contact and old not in contact
    for entry in kb.entries.values():
        for audience in [None, *kb.profile.audiences]:
            assert old not in kb.render(entry.id, audience), entry.id
    assert "0431-12345678" in kb.render("military-enlistment", "graduate")


def test_renamed_offices_reach_the_answers(tmp_path):
    folder = _copy_knowledge(tmp_path)
    old_names = ["学校学籍学历管理部门", "研究生院学位办"]

    def edit(profile):
        profile["school"] = "示例大学"
        profile["audiences"]["undergrad"]["office"]["name"] = "教务处学籍科"
        profile["audiences"]["graduate"]["office"]["name"] = "研究生院培养办"
        profile["audiences"]["graduate"]["office"]["address"] = "示例路1号"

    _edit_profile(folder, edit)
    kb, problems = check(folder, CATALOGUE)
    assert kb is not None and not problems, problems
    for entry in kb.entries.values():
        for audience in [None, *kb.profile.audiences]:
            text = kb.render(entry.id, audience)
            for old in old_names + ["卫星路7089号"]:
                assert old not in text, f"{entry.id} [{audience}] still says {old}"
    assert "教务处学籍科" in kb.render("xueji-mismatch")
    assert "研究生院培养办" in kb.render("xueji-mismatch", "graduate")
    contact = kb.render("school-contact")
    assert "教务处学籍科" in contact and "研究生院培养办" in contact and "示例路1号" in contact


# --- the faithfulness audit: answers routed to the students they were written for ----------

OUC_ONLY = ["国开总部", "总部盖章", "省校章", "所属分部", "国开学籍科"]  # 004's procedures
UNIVERSITY_ONLY = ["县级征兵办", "高校武装部", "生源地省级招生部门"]  # 000's 普通高校 procedures


def test_no_answer_passes_another_audiences_procedure_off_as_the_students_own(kb):
    for entry in kb.entries.values():
        for audience in kb.profile.audiences:
            text = kb.answer(entry.id, audience)
            own = kb.contact(audience)
            if kb.fits(entry.id, audience):
                continue
            note = text.split("\n\n")[0]
            assert note.startswith("说明") and own in note and kb.label(audience) in note, f"{entry.id} [{audience}]"
            written_for = [kb.label(a) for a in entry.audience if a in kb.profile.audiences]
            assert all(label in note for label in written_for), f"{entry.id} [{audience}]"


def test_ouc_procedures_reach_other_students_only_labelled(kb):
    for entry in kb.entries.values():
        for audience in ("undergrad", "graduate"):
            text = kb.answer(entry.id, audience)
            if any(word in text for word in OUC_ONLY):
                assert not kb.fits(entry.id, audience) and text.startswith("说明"), f"{entry.id} [{audience}]"


def test_university_procedures_reach_ouc_students_only_labelled(kb):
    for entry in kb.entries.values():
        text = kb.answer(entry.id, "ouc")
        if any(word in text for word in UNIVERSITY_ONLY):
            assert not kb.fits(entry.id, "ouc") and text.startswith("说明"), entry.id
            assert kb.contact("ouc") in text.split("\n\n")[0], entry.id


def test_the_gaokao_data_source_is_told_to_undergraduates_only(kb):
    """002: the 学籍 data is the 高考 registration; 001 问题11: a 研究生's comes from the 研究生招生考试 registration."""
    for entry in kb.entries.values():
        for audience in [None, *kb.profile.audiences]:
            for sentence in re.split(r"[。\n]", kb.answer(entry.id, audience)):
                if "高考时的报名信息" in sentence:
                    assert "本专科生" in sentence, f"{entry.id} [{audience}]: {sentence}"


def test_ouc_office_is_named_as_the_seed_names_it(kb):
    seed = norm((SEEDS_DIR / next(p.name for p in SEEDS_DIR.glob("004_*.txt"))).read_text(encoding="utf-8"))
    office = kb.profile.office_of("ouc").name
    assert "省级开放大学" not in office and "分部" in office and "分部" in seed
    for entry in kb.entries.values():
        for audience in [None, *kb.profile.audiences]:
            assert "省级开放大学" not in kb.answer(entry.id, audience), entry.id


def test_kaoyan_account_can_be_used_without_registering_again(kb):
    text = kb.render("kaoyan-chsi-account")
    assert not text.startswith("要用") and "可以用" in text and "无需再次注册" in text


def test_nonstandard_id_steps_keep_004s_two_conditions_apart(kb):
    """004 二 (只查学历): 非15位或18位身份证号; 004 三 (带二维码的备案表): 非18位身份证号."""
    lines = kb.render("xueli-nonstandard-id").splitlines()
    query = next(line for line in lines if "只查学历" in line)
    record = next(line for line in lines if "二维码" in line)
    assert "15位或18位" in query
    assert "18位" in record and "15位" not in record


def test_graduate_diploma_conditions_summary_keeps_article_46(kb):
    summary = kb.render("diploma-conditions", "graduate").split("\n")[0]
    assert all(word in summary for word in ["超过学制", "最长学习年限", "答辩未通过", "结业证书", "不再颁发毕业证书"])


def test_ouc_xueli_query_says_from_when_it_can_be_looked_up(kb):
    assert "发证日期" in kb.render("xueli-query", "ouc") and "落款日期" in kb.render("xueli-query", "ouc")


def test_bot_texts_promise_nothing_and_name_every_audience(kb):
    for key in kb.texts:
        assert "完善回答" not in kb.texts[key], key
    human = kb.text("human")
    assert all(kb.contact(audience) in human for audience in kb.profile.audiences)
    assert kb.profile.office_of("ouc").name in human


def test_stop_gap_audience_line_is_gone(kb):
    for entry in kb.entries.values():
        for template in [entry.answer, *(v.answer for v in entry.variants)]:
            assert "在问题里带上" not in template, entry.id


def test_every_answer_sending_students_to_chsi_carries_the_seed_link(kb):
    links = {kb.profile.chsi["site"], kb.profile.chsi["help"]}
    corpus = norm("\n".join(p.read_text(encoding="utf-8") for p in SEEDS_DIR.glob("*.txt")))
    assert all(norm(link) in corpus for link in links)
    for entry in kb.entries.values():
        for audience in [None, *kb.profile.audiences]:
            text = kb.answer(entry.id, audience)
            if "学信网" in text:
                assert any(link in text for link in links), f"{entry.id} [{audience}]"
            if "帮助中心" in text:
                assert kb.profile.chsi["help"] in text, f"{entry.id} [{audience}]"


def test_an_audience_without_an_office_gets_the_general_one_and_validate_warns(tmp_path):
    folder = _copy_knowledge(tmp_path)
    _edit_profile(folder, lambda profile: profile["audiences"]["ouc"].pop("office"))
    kb, problems = check(folder, CATALOGUE)
    assert kb is not None and not problems, problems
    assert any("ouc" in str(w) for w in kb.warnings)
    general = kb.contact(kb.profile.default_audience)
    assert kb.contact("ouc") == general and general.strip()
    assert general in kb.text("human_audience", "ouc") and general in kb.text("human")
    for entry in kb.entries.values():
        assert kb.answer(entry.id, "ouc").strip()
    flask = str(Path(sys.executable).parent / "flask")
    result = subprocess.run([flask, "kb", "validate"], cwd=DATA_DIR.parent, capture_output=True, text=True, timeout=120,
                            env={**{k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}, "KNOWLEDGE_DIR": str(folder)})
    assert result.returncode == 0 and "warning:" in result.stderr and "ouc" in result.stderr
