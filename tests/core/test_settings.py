"""Settings: environment over file over defaults; errors name the setting, never a secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coldchain.cli import main
from core.errors import ConfigError
from core.settings import load_settings


def test_defaults() -> None:
    settings = load_settings(env={})
    assert settings.mqtt.host == "127.0.0.1"
    assert settings.mqtt.port == 1883
    assert settings.influx_db == "coldchain"
    assert not settings.twilio_configured


def test_mqtt_url_with_credentials_and_tls() -> None:
    settings = load_settings(env={"COLDCHAIN_MQTT_URL": "mqtts://ingest:s%40cret@broker.example"})
    target = settings.mqtt
    assert (target.host, target.port, target.tls) == ("broker.example", 8883, True)
    assert (target.username, target.password) == ("ingest", "s@cret")
    assert "s@cret" not in repr(target)


def test_env_wins_over_file(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("influx_db: from_file\nbatch_size: 100\n")
    settings = load_settings(env={"COLDCHAIN_INFLUX_DB": "from_env"}, config_file=config)
    assert settings.influx_db == "from_env"
    assert settings.batch_size == 100


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"COLDCHAIN_MQTT_URL": "http://broker"}, "COLDCHAIN_MQTT_URL: must start with mqtt://"),
        ({"COLDCHAIN_INFLUX_URL": "influx:8086"}, "COLDCHAIN_INFLUX_URL: must be an http://"),
        ({"COLDCHAIN_API_BIND": "8000"}, "COLDCHAIN_API_BIND: must be HOST:PORT"),
        ({"COLDCHAIN_BATCH_SIZE": "zero"}, "COLDCHAIN_BATCH_SIZE:"),
        ({"COLDCHAIN_INFLUX_API": "v9"}, "COLDCHAIN_INFLUX_API:"),
    ],
)
def test_errors_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env=env)
    assert message in str(info.value)


def test_secrets_never_echoed() -> None:
    secret = "hunter2-very-secret"
    with pytest.raises(ConfigError) as info:
        load_settings(env={"TWILIO_AUTH_TOKEN": secret, "COLDCHAIN_MQTT_URL": f"ftp://{secret}"})
    assert secret not in str(info.value)
    settings = load_settings(env={"TWILIO_AUTH_TOKEN": secret, "COLDCHAIN_INFLUX_TOKEN": secret})
    assert secret not in repr(settings)
    assert secret not in str(settings.model_dump())


def test_unknown_key_in_file(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("mqtt_uri: mqtt://x\n")
    with pytest.raises(ConfigError, match="mqtt_uri: unknown setting"):
        load_settings(env={}, config_file=config)


def test_config_check_shows_no_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "hunter2-very-secret"
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", secret)
    monkeypatch.setenv("COLDCHAIN_INFLUX_PASSWORD", secret)
    monkeypatch.setenv("COLDCHAIN_MQTT_URL", f"mqtts://coldchain:{secret}@broker.example.com:8883")
    assert main(["config", "check"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["mqtt_url"] == "mqtts://coldchain:***@broker.example.com:8883"
    assert (shown["twilio_auth_token"], shown["influx_password"]) == ("***", "***")
    assert shown["influx_token"] is None
    assert secret not in json.dumps(shown)
