"""Secrets never printed: ``coldchain config check`` with credentials in every URL."""

from __future__ import annotations

import json

import pytest

from coldchain.cli import main

SECRET = "hunter2-very-secret"


def test_config_check_hid_the_mqtt_password_but_printed_passwords_in_other_urls(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: only COLDCHAIN_MQTT_URL's password was hidden; one embedded in the InfluxDB,
    Twilio-compatible or public URL was printed as it was."""
    monkeypatch.setenv("COLDCHAIN_MQTT_URL", f"mqtts://ingest:{SECRET}@broker.example.com:8883")
    monkeypatch.setenv("COLDCHAIN_INFLUX_URL", f"https://admin:{SECRET}@influx.example.com:8086")
    monkeypatch.setenv("COLDCHAIN_TWILIO_BASE_URL", f"https://{SECRET}@twilio-proxy.example.com")
    monkeypatch.setenv("COLDCHAIN_PUBLIC_URL", f"https://hook:{SECRET}@coldchain.example.com")
    assert main(["config", "check"]) == 0
    printed = capsys.readouterr().out
    assert SECRET not in printed
    shown = json.loads(printed)
    assert shown["mqtt_url"] == "mqtts://ingest:***@broker.example.com:8883"
    assert shown["influx_url"] == "https://admin:***@influx.example.com:8086"
    assert shown["twilio_base_url"] == "https://***@twilio-proxy.example.com"
    assert shown["public_url"] == "https://hook:***@coldchain.example.com"
