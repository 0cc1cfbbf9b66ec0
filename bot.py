"""The parts of a running bot, built once per process and shared by the webhook and the CLI."""
from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import redis
from flask import current_app
from wechatpy.crypto import WeChatCrypto

import config as settings
import metrics
import state
from embedded_redis import EmbeddedRedis
from knowledge import cache
from knowledge.base import KnowledgeBase, KnowledgeError, Problem, load
from knowledge.live import LiveKnowledge
from knowledge.matcher import MEMO, Matcher, load_rules

log = logging.getLogger(__name__)
BUILD_SWITCH_INTERVAL = 0.0005  # seconds: how long a rebuild may hold the GIL while a message waits (Python's default: 0.005)


@dataclass
class Bot:
    """Everything a request needs. ``knowledge_pair`` is replaced in one assignment when staff save an edit:
    read it once per message (``kb, matcher = bot.knowledge_pair``) so a message never mixes two versions."""

    config: dict[str, Any]
    knowledge_pair: tuple[KnowledgeBase, Matcher]
    store: state.Store
    crypto: WeChatCrypto | None
    version: int | None = None  # the live knowledge version served (None: the shipped folder, Redis unread)
    reloader: "Reloader | None" = None

    @property
    def kb(self) -> KnowledgeBase:
        return self.knowledge_pair[0]

    @property
    def matcher(self) -> Matcher:
        return self.knowledge_pair[1]


def served(kb: KnowledgeBase) -> KnowledgeBase:
    """The knowledge base without its disabled entries: what students can be answered or offered."""
    if all(entry.enabled for entry in kb.entries.values()):
        return kb
    return replace(kb, entries={key: entry for key, entry in kb.entries.items() if entry.enabled})


def knowledge(config: dict[str, Any]) -> tuple[KnowledgeBase, Matcher]:
    """The knowledge base of a folder and its matcher index: all the CLI needs to answer like the webhook.

    Disabled entries are left out of both, so they are never answered or offered; a keyword rule
    answering with one is a problem (the loader already refuses a menu button pointing at one)."""
    folder = Path(config["KNOWLEDGE_DIR"])
    cache.use(config.get("CACHE_DIR"))
    kb = load(folder)
    rules_path = folder / "rules.yaml"
    try:
        disabled = [
            Problem("rules.yaml", None, f"rule {i} ({rule.keywords[0]}) answers with disabled entry {rule.entry!r}")
            for i, rule in enumerate(load_rules(rules_path, kb), 1)
            if rule.entry and not kb.entries[rule.entry].enabled
        ]
        if disabled:
            raise KnowledgeError(disabled)
        live = served(kb)
        return live, Matcher(live, lexicon_dir=folder / "lexicon", rules_path=rules_path, memo=int(config.get("MATCH_MEMO", MEMO)))
    except ValueError as exc:  # LexiconError or a broken rules.yaml: data staff edit, reported like the rest
        raise KnowledgeError([Problem("lexicon/rules", None, str(exc))]) from exc


def connect_store(config: dict[str, Any], start_embedded: bool = True) -> state.Store:
    """The Store on ``REDIS_URL``, or on the embedded server (started here unless ``start_embedded`` is False)."""
    embedded = None
    url = config["REDIS_URL"]
    if not url:
        embedded = EmbeddedRedis(Path(config["INSTANCE_PATH"]))
        url = embedded.url
        if start_embedded:
            embedded.start()
        else:
            embedded = None
    return state.Store(
        client=state.connect(url, config["REDIS_TIMEOUT"]),
        prefix=config["REDIS_PREFIX"],
        session_ttl=config["SESSION_TTL"],
        embedded=embedded,
        on_error=metrics.redis_error,
    )


def live_knowledge(config: dict[str, Any], store: state.Store) -> LiveKnowledge:
    return LiveKnowledge(Path(config["KNOWLEDGE_DIR"]), store, config)


def initial_knowledge(config: dict[str, Any], store: state.Store) -> tuple[int | None, KnowledgeBase, Matcher]:
    """The live knowledge (shipped + staff edits) when Redis answers, else the shipped folder (version None)."""
    if store.ping():
        try:
            return live_knowledge(config, store).build()
        except KnowledgeError as exc:
            log.error("the live knowledge base cannot be built, serving the shipped folder:\n%s", exc)
        except (redis.RedisError, OSError) as exc:
            log.warning("the live knowledge base cannot be read (%s): serving the shipped folder", exc.__class__.__name__)
    kb, matcher = knowledge(config)
    return None, kb, matcher


class Reloader:
    """Keeps one process's knowledge in step with ``kb:version``: poll, build aside, swap.

    A daemon thread, so it never keeps the process alive; while Redis is down the Store answers None
    at once (and logs once) and the bot keeps what it has; a build that fails is logged once and the
    previous knowledge stays live.
    """

    def __init__(self, bot: Bot, interval: float):
        self.bot = bot
        self.interval = interval
        self.live = live_knowledge(bot.config, bot.store)
        self._failed: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def start(self) -> "Reloader":
        """Start polling (again, in a forked worker whose thread stayed behind in the parent)."""
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return self
        self._pid = os.getpid()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="kb-reload", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # the thread must outlive any surprise; the next poll tries again
                log.exception("knowledge reload failed")

    def check(self) -> bool:
        """Rebuild and swap if the version moved; True when new knowledge went live."""
        version = self.bot.store.kb_poll_version()
        if version is None or version == self.bot.version or version == self._failed:
            return False
        started = time.perf_counter()
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, BUILD_SWITCH_INTERVAL))  # messages wait less for the GIL meanwhile
        try:
            built, kb, matcher = self.live.build()
        except KnowledgeError as exc:
            self._failed = version
            log.error("knowledge version %d cannot be built; keeping version %s:\n%s", version, self.bot.version, exc)
            return False
        except (redis.RedisError, OSError) as exc:
            log.warning("knowledge version %d cannot be read (%s); trying again", version, exc.__class__.__name__)
            return False
        finally:
            sys.setswitchinterval(switch)
        self.bot.knowledge_pair = (kb, matcher)
        self.bot.version = built
        log.info("knowledge version %d live (built in %.2f s)", built, time.perf_counter() - started)
        return True


def build(config: dict[str, Any]) -> Bot:
    """Connect Redis (embedded when no REDIS_URL), build the live knowledge and its matcher, start reloading."""
    settings.require_token(config)
    store = connect_store(config)
    if not store.ping():
        where = config["REDIS_URL"] or store.embedded.url
        log.warning("redis at %s does not answer: starting in stateless mode", where.split("@")[-1])
    version, kb, matcher = initial_knowledge(config, store)
    crypto = None
    if config["WECHAT_ENCODING_AES_KEY"]:
        crypto = WeChatCrypto(config["WECHAT_TOKEN"], config["WECHAT_ENCODING_AES_KEY"], config["WECHAT_APP_ID"])
    bot = Bot(config=config, knowledge_pair=(kb, matcher), store=store, crypto=crypto, version=version)
    if config["KB_RELOAD_INTERVAL"] > 0:
        bot.reloader = Reloader(bot, config["KB_RELOAD_INTERVAL"]).start()
        atexit.register(bot.reloader.stop)
    return bot


_building = threading.Lock()


def current() -> Bot:
    """The app's bot, built on first use when the app was created lazily (under the flask CLI)."""
    app = current_app
    if app.extensions.get("xueji") is None:
        with _building:
            if app.extensions.get("xueji") is None:
                app.extensions["xueji"] = build(app.config)
    found = app.extensions["xueji"]
    if found.reloader is not None and found.reloader._pid != os.getpid():
        found.reloader.start()
    return found
