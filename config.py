"""Configuration from the environment (and a ``.env`` file), in one place.

Every variable the bot reads is listed in ``SETTINGS`` with its default and
documented in ``.env.example``; ``create_app`` takes a mapping that overrides
them (tests pass one), so no other module reads the bot's settings from the environment.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parent

def flag(raw: str) -> bool:
    """``1``/``true``/``yes``/``on`` (any case) is on; ``0``/``false``/``no``/``off`` is off."""
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


# name -> (default, converter)
SETTINGS: dict[str, tuple[Any, Callable[[str], Any]]] = {
    "WECHAT_TOKEN": ("", str),
    "WECHAT_APP_ID": ("", str),
    "WECHAT_APP_SECRET": ("", str),
    "WECHAT_ENCODING_AES_KEY": ("", str),
    "REDIS_URL": ("", str),
    "PORT": (5000, int),
    "SECRET_KEY": ("", str),
    "INSTANCE_PATH": (str(ROOT / "instance"), str),
    "KNOWLEDGE_DIR": (str(ROOT / "knowledge"), str),
    "REDIS_PREFIX": ("xueji:", str),
    "REDIS_TIMEOUT": (0.25, float),
    "SESSION_TTL": (1800, int),
    "RETRY_WAIT": (4.0, float),
    "MAX_BODY_BYTES": (64 * 1024, int),
    "HUMAN_HANDOFF": ("contacts", str),
    "WECHAT_API_BASE": ("https://api.weixin.qq.com/cgi-bin/", str),
    "KB_RELOAD_INTERVAL": (0.25, float),
    "TRUSTED_PROXIES": (0, int),
    "ADMIN_SESSION_HOURS": (8, int),
    "ALLOW_PLAINTEXT": (False, flag),
    "RATE_LIMIT": (20, int),
    "TIMESTAMP_WINDOW": (300, int),
    "MATCH_MEMO": (4096, int),
    "CACHE_DIR": ("", str),
    "PROMETHEUS_MULTIPROC_DIR": ("", str),
    "LOG_LEVEL": ("INFO", str),
}
HANDOFF_MODES = ("contacts", "kf")


class ConfigError(RuntimeError):
    """The configuration cannot run the bot; the message says what to set."""


def load(overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Settings from defaults < ``.env`` < environment < ``overrides``, converted to their types.

    ``env`` replaces both the environment and ``.env`` (tests pass one).
    """
    if env is None:
        sources: dict[str, Any] = {k: v for k, v in dotenv_values(ROOT / ".env").items() if v is not None}
        sources.update(os.environ)
    else:
        sources = dict(env)
    sources.update(overrides or {})
    settings: dict[str, Any] = {}
    for name, (default, convert) in SETTINGS.items():
        raw = sources.get(name)
        try:
            settings[name] = default if raw in (None, "") else convert(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name}={raw!r} is not a valid {convert.__name__}") from exc
    for name, value in (overrides or {}).items():
        settings.setdefault(name, value)
    if settings["REDIS_URL"] and not settings["REDIS_URL"].startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix:// (or be empty for the embedded Redis)")
    aes_key = settings["WECHAT_ENCODING_AES_KEY"]
    if aes_key and (len(aes_key) != 43 or not settings["WECHAT_APP_ID"]):
        raise ConfigError("WECHAT_ENCODING_AES_KEY must be 43 characters and needs WECHAT_APP_ID")
    if settings["HUMAN_HANDOFF"] not in HANDOFF_MODES:
        raise ConfigError(f"HUMAN_HANDOFF must be one of {', '.join(HANDOFF_MODES)} (kf hands students to 多客服)")
    if not settings["SECRET_KEY"]:
        settings["SECRET_KEY"] = settings["WECHAT_TOKEN"]
    return settings


def require_token(settings: Mapping[str, Any]) -> None:
    """The webhook cannot verify WeChat without a token: refuse to serve rather than guess one."""
    if not settings["WECHAT_TOKEN"]:
        raise ConfigError("WECHAT_TOKEN is not set: copy it from the official account's 服务器配置 (see .env.example)")
