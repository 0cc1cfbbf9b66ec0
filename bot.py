"""The parts of a running bot, built once per process and shared by the webhook and the CLI."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import current_app
from wechatpy.crypto import WeChatCrypto

import config as settings
import metrics
import state
from embedded_redis import EmbeddedRedis
from knowledge.base import KnowledgeBase, KnowledgeError, Problem, load
from knowledge.matcher import Matcher

log = logging.getLogger(__name__)


@dataclass
class Bot:
    config: dict[str, Any]
    kb: KnowledgeBase
    matcher: Matcher
    store: state.Store
    crypto: WeChatCrypto | None


def knowledge(config: dict[str, Any]) -> tuple[KnowledgeBase, Matcher]:
    """The knowledge base and its matcher index: all the CLI needs to answer like the webhook."""
    folder = Path(config["KNOWLEDGE_DIR"])
    kb = load(folder)
    try:
        return kb, Matcher(kb, lexicon_dir=folder / "lexicon", rules_path=folder / "rules.yaml")
    except ValueError as exc:  # LexiconError or a broken rules.yaml: data staff edit, reported like the rest
        raise KnowledgeError([Problem("lexicon/rules", None, str(exc))]) from exc


def build(config: dict[str, Any]) -> Bot:
    """Load the knowledge, build the matcher index and connect Redis (embedded when no REDIS_URL)."""
    settings.require_token(config)
    kb, matcher = knowledge(config)
    embedded = None
    url = config["REDIS_URL"]
    if not url:
        embedded = EmbeddedRedis(Path(config["INSTANCE_PATH"])).start()
        url = embedded.url
    store = state.Store(
        client=state.connect(url, config["REDIS_TIMEOUT"]),
        prefix=config["REDIS_PREFIX"],
        session_ttl=config["SESSION_TTL"],
        embedded=embedded,
        on_error=metrics.redis_error,
    )
    if not store.ping():
        log.warning("redis at %s does not answer: starting in stateless mode", url.split("@")[-1])
    crypto = None
    if config["WECHAT_ENCODING_AES_KEY"]:
        crypto = WeChatCrypto(config["WECHAT_TOKEN"], config["WECHAT_ENCODING_AES_KEY"], config["WECHAT_APP_ID"])
    return Bot(config=config, kb=kb, matcher=matcher, store=store, crypto=crypto)


_building = threading.Lock()


def current() -> Bot:
    """The app's bot, built on first use when the app was created lazily (under the flask CLI)."""
    app = current_app
    if app.extensions.get("xueji") is None:
        with _building:
            if app.extensions.get("xueji") is None:
                app.extensions["xueji"] = build(app.config)
    return app.extensions["xueji"]
