"""Settings: production fails closed naming what is missing; dev keys are made once and kept."""

from __future__ import annotations

import stat

import pytest

from portal.config import ConfigError, load_settings, new_token_key, parse_token_keys


def test_production_refuses_to_start_without_keys_and_names_them(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_settings({"PORTAL_MODE": "production"}, instance_path=tmp_path)
    message = str(error.value)
    for name in ("PORTAL_SECRET_KEYS", "PORTAL_LINK_KEYS", "PORTAL_TOKEN_KEYS", "DATABASE_URL", "PORTAL_BASE_URL"):
        assert name in message
    assert not (tmp_path / "keys.json").exists()


def test_production_starts_with_every_key(tmp_path):
    settings = load_settings({"PORTAL_MODE": "production", "PORTAL_SECRET_KEYS": "s1", "PORTAL_LINK_KEYS": "l1",
                              "PORTAL_TOKEN_KEYS": new_token_key(), "DATABASE_URL": "sqlite:///x.db",
                              "PORTAL_BASE_URL": "https://connect.example", "REDIS_URL": "redis://127.0.0.1:6379/0"},
                             instance_path=tmp_path)
    assert settings.production and not settings.sandbox_enabled and settings.secure_cookies


def test_demo_mode_generates_keys_once_and_keeps_them(tmp_path):
    first = load_settings({}, instance_path=tmp_path)
    second = load_settings({}, instance_path=tmp_path)
    assert first.link_keys == second.link_keys and first.token_keys == second.token_keys
    assert stat.S_IMODE((tmp_path / "keys.json").stat().st_mode) == 0o600
    assert first.database_url == f"sqlite:///{tmp_path / 'easyconnect.db'}"


def test_link_keys_must_differ_from_session_keys(tmp_path):
    with pytest.raises(ConfigError, match="must differ"):
        load_settings({"PORTAL_SECRET_KEYS": "same", "PORTAL_LINK_KEYS": "same"}, instance_path=tmp_path)


@pytest.mark.parametrize("value, message", [
    ("nokid", "kid:base64url"),
    ("k1:!!!notbase64", "not base64url"),
    ("k1:c2hvcnQ", "32 bytes"),
    ("bad-kid:" + "A" * 43, "kid:base64url"),
])
def test_token_key_parsing_errors(value, message):
    with pytest.raises(ConfigError, match=message):
        parse_token_keys(value)


def test_repeated_key_id_is_refused():
    key = new_token_key()
    with pytest.raises(ConfigError, match="repeated"):
        parse_token_keys(f"{key},{key}")


def test_unknown_mode_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="PORTAL_MODE"):
        load_settings({"PORTAL_MODE": "yolo"}, instance_path=tmp_path)


def test_production_refuses_unsafe_combinations(tmp_path):
    base = {"PORTAL_MODE": "production", "PORTAL_SECRET_KEYS": "s1", "PORTAL_LINK_KEYS": "l1",
            "PORTAL_TOKEN_KEYS": new_token_key(), "DATABASE_URL": "sqlite:///x.db",
            "PORTAL_BASE_URL": "https://connect.example", "REDIS_URL": "redis://127.0.0.1:6379/0"}
    for extra, message in (({"PORTAL_SANDBOX": "1", "PORTAL_SANDBOX_CLIENT_SECRET": "x"}, "PORTAL_SANDBOX"),
                           ({"PORTAL_ALLOW_PRIVATE_URLS": "1"}, "PORTAL_ALLOW_PRIVATE_URLS"),
                           ({"PORTAL_BASE_URL": "http://connect.example"}, "https"),
                           ({"REDIS_URL": ""}, "REDIS_URL")):
        with pytest.raises(ConfigError, match=message):
            load_settings({**base, **extra}, instance_path=tmp_path)
    assert load_settings(base, instance_path=tmp_path).production
