"""Configuration: defaults, overrides and the mistakes an operator can make."""
from __future__ import annotations

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
