"""``flask chat`` driven through its standard input, as a newcomer would type, against real Redis."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from knowledge.base import KnowledgeBase
from knowledge.matcher import Matcher

FLASK = str(Path(sys.executable).parent / "flask")


def chat(lines: list[str], *args: str, redis_url: str, prefix: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "REDIS_", "FLASK_"))}
    environment.update(REDIS_URL=redis_url, REDIS_PREFIX=prefix, **env)
    return subprocess.run([FLASK, "chat", *args], cwd=ROOT, env=environment, input="".join(l + "\n" for l in lines),
                          capture_output=True, text=True, timeout=120)


def replies(output: str) -> dict[str, str]:
    """Each typed line (echoed as ``> line``) and the reply printed after it."""
    result: dict[str, str] = {}
    for block in output.split("> ")[1:]:
        typed, _, reply = block.partition("\n")
        result[typed] = reply.strip()
    return result


def test_chat_is_multi_turn_through_the_webhook(kb: KnowledgeBase, redis_url: str, prefix: str) -> None:
    matcher = Matcher(kb)
    probe = next(p for p in ["学历", "学籍", "毕业证", "查不到"] if matcher.match(p).action == "clarify")
    candidates = matcher.match(probe).candidates
    result = chat([probe, "第二个", "1", "更多", "转人工", "/reset", kb.entries["diploma-lost"].question], redis_url=redis_url, prefix=prefix)
    assert result.returncode == 0, result.stderr
    said = replies(result.stdout)
    assert kb.entries[candidates[1]].question in said[probe]
    second = kb.paginate(kb.answer(candidates[1], "undergrad"))[0]
    if kb.depends_on_audience(candidates[1]):
        assert said["第二个"].startswith(kb.text("audience_question")) and said["1"] == second
    else:
        assert said["第二个"] == second
    assert said["更多"] == kb.text("no_more")
    assert kb.contact("undergrad") in said["转人工"]
    assert "cleared" in said["/reset"]
    assert said[kb.entries["diploma-lost"].question].startswith(kb.text("audience_question")), "the reset forgot the audience"


def test_chat_keeps_the_student_between_runs_and_simulates_follow_and_tap(kb: KnowledgeBase, redis_url: str, prefix: str) -> None:
    followed = chat(["我是研究生"], "--event", "subscribe", "--openid", "o-chat-a", redis_url=redis_url, prefix=prefix)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.startswith(kb.text("welcome"))
    tapped = chat(["更多"], "--click", "MENU_XUELI_QUERY", "--openid", "o-chat-a", redis_url=redis_url, prefix=prefix)
    assert tapped.stdout.startswith(kb.pages("xueli-query", "graduate")[0])
    other = chat([], "--click", "MENU_XUELI_QUERY", "--openid", "o-chat-b", redis_url=redis_url, prefix=prefix)
    assert other.stdout.startswith(kb.text("audience_question"))


def test_chat_shows_a_transfer_in_kf_mode(redis_url: str, prefix: str) -> None:
    result = chat(["转人工", "毕业证丢了", "结束人工"], redis_url=redis_url, prefix=prefix, HUMAN_HANDOFF="kf")
    said = replies(result.stdout)
    assert "transfer_customer_service" in said["转人工"] and "transfer_customer_service" in said["毕业证丢了"]
    assert "transfer_customer_service" not in said["结束人工"]
