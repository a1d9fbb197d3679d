"""Settings: SPEC names and defaults, one-line errors naming the variable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shared.settings import AccessMode, Engine, Settings, SettingsError, load_settings


def test_defaults_match_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(Settings.model_fields):
        monkeypatch.delenv(name, raising=False)
    s = load_settings()
    assert s.REDIS_URL == "redis://localhost:6379/0" and s.REDIS_CLUSTER is False
    assert s.broker_url == s.REDIS_URL
    assert s.JWT_ALGORITHMS == ["HS256"] and s.JWT_LEEWAY == 10
    assert (s.WS_MAX_CONNECTIONS_PER_USER, s.WS_HEARTBEAT_INTERVAL) == (5, 30)
    assert s.WS_MESSAGE_MAX_SIZE == 1_048_576 and s.WS_ALLOWED_ORIGINS is None
    assert s.WS_TOKEN_COOKIE == "access_token" and s.WS_MAX_ROOMS_PER_CONNECTION == 100
    assert (s.WS_RATE_LIMIT, s.WS_RATE_BURST, s.WS_SEND_QUEUE_MAX) == (20, 40, 1000)
    assert s.WS_MAX_CONTENT_LENGTH == 4000 and s.ACCESS_MODE is AccessMode.ACL
    assert s.ENGINE is Engine.REDIS and s.STREAM_SHARDS == 8
    assert (s.ROOM_HISTORY_SIZE, s.ROOM_HISTORY_TTL) == (1000, 86400)


def test_lists_are_read_from_comma_separated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_ALGORITHMS", "RS256, ES256")
    monkeypatch.setenv("WS_ALLOWED_ORIGINS", "https://a.example, https://b.example/")
    s = load_settings()
    assert s.JWT_ALGORITHMS == ["RS256", "ES256"]
    assert s.WS_ALLOWED_ORIGINS == ["https://a.example", "https://b.example"]


@pytest.mark.parametrize(("name", "value"), [
    ("WS_RATE_LIMIT", "fast"),
    ("STREAM_SHARDS", "0"),
    ("JWT_ALGORITHMS", "none"),
    ("JWT_ALGORITHMS", "HS256,none"),
    ("JWT_LEEWAY", "31"),
    ("ACCESS_MODE", "everyone"),
    ("ENGINE", "kafka"),
    ("REDIS_CLUSTER", "maybe"),
    ("REDIS_URL", "localhost:6390"),
    ("REDIS_URL", "http://localhost:6390/0"),
    ("REDIS_URL", "redis://localhost:port/0"),
    ("REDIS_URL", "redis://localhost:6390/0?protocol=3"),
    ("DRAMATIQ_BROKER_URL", "redis//localhost"),
])
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, name: str,
                                      value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(err.value).startswith(f"{name}:") and "\n" not in str(err.value)


def test_both_keys_is_an_error() -> None:
    with pytest.raises(SettingsError, match="exactly one"):
        load_settings(JWT_SECRET="a" * 32, JWT_PUBLIC_KEY="pem")


def test_process_stops_at_start_with_one_line() -> None:
    env = {"PATH": "/usr/bin:/bin", "WS_SEND_QUEUE_MAX": "-3", "JWT_SECRET": "x" * 32}
    result = subprocess.run([sys.executable, "-m", "roomcast.cli.main", "gateway", "--port", "1"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "WS_SEND_QUEUE_MAX" in lines[0]


def test_gateway_without_a_key_refuses_to_start() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "roomcast.cli.main", "gateway", "--port", "1"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "JWT_SECRET / JWT_PUBLIC_KEY" in result.stderr.strip().splitlines()[-1]
