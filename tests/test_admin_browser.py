"""The staff console in a real headless Chromium (Debian's ``chromium``, driven by Playwright), against ``python app.py``.

A staff member signs in, finds an entry, edits its answer, tries it, saves it and
the webhook (signed, encrypted XML over HTTP) answers with the new text; then a
question the bot could not answer is added as a similar question and is answered.
Screenshots of the pages go to ``bench/out/screenshots/`` (git-ignored).
"""
from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest

import state
from conftest import ROOT, TOKEN, LiveApp, drop_keys, introduce, start_app
from console_helpers import create_user_cli, wait_for
from knowledge.base import KnowledgeBase
from wechatsim import text_message

playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = ROOT / "bench" / "out" / "screenshots"
PASSWORD = "browser test password"
ENTRY = "diploma-lost"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# ways a student might say "I lost my diploma" that the shipped knowledge may not understand yet
PHRASINGS = ["那个红本本找不着了咋整", "文凭被我搞没了怎么弄", "毕业的本子丢了咋办呀", "我把毕业那张证弄没了"]

if not CHROMIUM.exists():
    pytestmark = pytest.mark.skipif(not os.environ.get("CI"), reason="Debian's chromium is not installed (scripts/test.sh installs it)")


@pytest.fixture
def served(tmp_path: Path, redis_url: str) -> Iterator[LiveApp]:
    prefix = f"test:{uuid.uuid4().hex[:10]}:"
    app = start_app(tmp_path, REDIS_URL=redis_url, REDIS_PREFIX=prefix, SECRET_KEY="browser-secret")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "REDIS_", "FLASK_"))},
           "WECHAT_TOKEN": TOKEN, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "INSTANCE_PATH": str(tmp_path / "cli")}
    created = create_user_cli(env, "teacher", PASSWORD)
    assert created.returncode == 0, created.stderr
    yield app
    app.stop()
    drop_keys(redis_url, prefix)


@pytest.fixture
def browser() -> Iterator[object]:
    assert CHROMIUM.exists(), "apt-get install -y chromium (scripts/test.sh does)"
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


def _seed_usage(store: state.Store, today: dt.date) -> None:
    """A month of recorded outcomes, as the webhook writes them, so the usage chart has something to draw."""
    for days_ago in range(1, 30):
        day = today - dt.timedelta(days=days_ago)
        for n in range(20 + (days_ago * 7) % 23):
            outcome = ("answer", "answer", "answer", "clarify", "fallback", "human")[n % 6]
            store.commit(None, b"", "o-seed", state.Effects(outcome=outcome, topic=ENTRY if outcome == "answer" else None), today=day)


def _sign_in(page: object, base: str) -> None:
    page.goto(f"{base}/admin/entries")
    assert "/admin/login" in page.url
    page.fill("#username", "teacher")
    page.fill("#password", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{base}/admin/entries")


def test_staff_edit_try_save_and_teach_in_a_real_browser(served: LiveApp, browser: object, kb: KnowledgeBase) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    base = served.base
    wechat = served.wechat()
    store = served.store()
    _seed_usage(store, dt.date.today())
    # the first phrasing the bot falls back on is recorded as unanswered, as any student's would be

    def falls_back(phrasing: str) -> bool:
        before = store.stats(dt.date.today()).get("outcome:fallback", 0)
        reply = wechat.send(text_message(phrasing, openid=f"o-{uuid.uuid4().hex[:8]}"), mode="safe")
        return reply.status == 200 and store.stats(dt.date.today()).get("outcome:fallback", 0) == before + 1

    unanswered = next((p for p in PHRASINGS if falls_back(p)), None)
    assert unanswered, "one of the phrasings must be beyond the shipped knowledge"

    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(30_000)
    _sign_in(page, base)

    # search an entry
    page.fill("#q", "毕业证")
    page.click("form.search button[type=submit]")
    page.wait_for_url("**/admin/entries?q=*")
    assert page.locator(f'tr[data-entry="{ENTRY}"]').count() == 1
    assert page.locator("tr[data-entry]").count() < len(kb.entries)
    page.screenshot(path=str(SHOTS / "entries.png"), full_page=True)

    # edit its answer and try it with the draft
    page.click(f'tr[data-entry="{ENTRY}"] a')
    page.wait_for_url(f"{base}/admin/entries/{ENTRY}")
    new_answer = f"（网页后台 {uuid.uuid4().hex[:6]}）学历证书遗失后，可向毕业学校申请出具学历证明书，与原证书具有同等效力。"
    page.fill("#answer", new_answer)
    page.fill("#try_question", kb.entries[ENTRY].question)
    page.click("button[name=action][value=try]")
    page.wait_for_selector("section.trial")
    assert page.locator("section.trial .bubble").first.inner_text().startswith(new_answer)
    assert page.locator("section.trial [data-action]").get_attribute("data-action") == "answer"
    assert page.input_value("#answer") == new_answer  # the draft is still in the form
    page.screenshot(path=str(SHOTS / "edit.png"), full_page=True)

    # save (confirming if the console lists changed decisions) and see the webhook answer with it
    page.click("button[name=action][value=save]")
    page.wait_for_load_state()
    if page.locator("button[name=action][value=confirm]").count():
        page.click("button[name=action][value=confirm]")
    page.wait_for_selector("p.flash.ok")
    introduce(wechat, kb, "o-student")  # the edited answer is the default one, which 本专科生 get
    reply = wait_for(lambda: (r := wechat.send(text_message(kb.entries[ENTRY].question), mode="safe")).content and r.content.startswith(new_answer) and r, timeout=15)
    assert reply.status == 200

    # teach it the question it could not answer
    page.click("nav a[href='/admin/unanswered']")
    group = page.locator("li.group", has_text=unanswered)
    assert group.count() == 1
    group.locator("select[name=entry]").select_option(ENTRY)
    group.locator("button", has_text="加为相似问").click()
    page.wait_for_selector("p.flash.ok")
    assert page.locator("li.group", has_text=unanswered).count() == 0
    taught = wait_for(lambda: (r := wechat.send(text_message(unanswered), mode="safe")).content and r.content.startswith(new_answer) and r, timeout=15)
    assert taught.status == 200

    # the usage chart
    page.click("nav a[href='/admin/usage']")
    page.wait_for_selector("figure.chart svg polyline")
    assert page.locator("figure.chart polyline").count() == 5
    page.screenshot(path=str(SHOTS / "usage.png"), full_page=True)
    context.close()

    # the same pages on a phone
    phone = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="zh-CN")
    small = phone.new_page()
    small.set_default_timeout(30_000)
    _sign_in(small, base)
    for name, path in (("entries", "/admin/entries"), ("edit", f"/admin/entries/{ENTRY}"), ("usage", "/admin/usage"), ("unanswered", "/admin/unanswered")):
        small.goto(f"{base}{path}")
        width = small.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"] + 1, f"{path} scrolls sideways on a phone ({width}px)"
        small.screenshot(path=str(SHOTS / f"phone-{name}.png"), full_page=name != "edit")
    phone.close()
