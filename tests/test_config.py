"""Configuration: defaults, overrides and the mistakes an operator can make."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import config


def test_defaults_and_overrides_are_typed() -> None:
    settings = config.load({"PORT": "8123", "REDIS_TIMEOUT": "0.1"}, env={})
    assert settings["PORT"] == 8123 and settings["REDIS_TIMEOUT"] == 0.1
    assert settings["REDIS_URL"] == "" and settings["SESSION_TTL"] == 1800


def test_environment_wins_over_defaults_and_overrides_win_over_environment() -> None:
    assert config.load(env={"PORT": "7000"})["PORT"] == 7000
    assert config.load({"PORT": "7001"}, env={"PORT": "7000"})["PORT"] == 7001


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"PORT": "eighty"}, "PORT='eighty' is not a valid int"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL must start with"),
        ({"WECHAT_ENCODING_AES_KEY": "short", "WECHAT_APP_ID": "wx1"}, "43 characters"),
        ({"WECHAT_ENCODING_AES_KEY": "a" * 43}, "needs WECHAT_APP_ID"),
    ],
)
def test_mistakes_are_refused_with_the_reason(settings: dict, message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.load(settings, env={})


def test_serving_without_a_token_is_refused() -> None:
    with pytest.raises(config.ConfigError, match="WECHAT_TOKEN is not set"):
        config.require_token(config.load(env={}))
    config.require_token(config.load({"WECHAT_TOKEN": "t"}, env={}))


ROOT = Path(config.__file__).resolve().parent


def _example_lines() -> dict[str, bool]:
    """Variable → whether .env.example sets it (False: only a commented line names it)."""
    found: dict[str, bool] = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^(#?)([A-Z][A-Z0-9_]*)=", line)
        if match:
            found[match.group(2)] = found.get(match.group(2), False) or not match.group(1)
    return found


def test_env_example_names_every_variable_the_bot_and_gunicorn_read() -> None:
    gunicorn = set(re.findall(r'os\.environ\.get\("([A-Z][A-Z0-9_]*)"', (ROOT / "deploy" / "gunicorn.conf.py").read_text()))
    gunicorn |= set(re.findall(r"os\.environ\.get\('([A-Z][A-Z0-9_]*)'", (ROOT / "deploy" / "gunicorn.conf.py").read_text()))
    missing = (set(config.SETTINGS) | gunicorn) - set(_example_lines())
    assert not missing, f".env.example does not document {sorted(missing)}"


def test_env_example_sets_nothing_the_systemd_unit_or_the_image_sets() -> None:
    """systemd's EnvironmentFile= and compose's env_file override Environment= and ENV, even with an empty value."""
    unit = set(re.findall(r"^Environment=([A-Z][A-Z0-9_]*)=", (ROOT / "deploy" / "xueji-bot.service").read_text(), re.MULTILINE))
    image = set(re.findall(r"(?:ENV\s+|^\s+)([A-Z][A-Z0-9_]*)=", (ROOT / "deploy" / "Dockerfile").read_text(), re.MULTILINE))
    assert unit and image
    set_here = {name for name, active in _example_lines().items() if active}
    assert not set_here & (unit | image), f"these lines in .env.example would override deploy/: {sorted(set_here & (unit | image))}"
