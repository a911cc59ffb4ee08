"""LoRaWAN details the golden corpus does not show on its own: the Dragino encoder path
(the grafana scenario's LHT65N) and the battery-volts scales."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from core.types import FaultCode, Quantity
from devices.base import DeviceSample, Family, SampleValue
from devices.chirpstack import FAMILY as CHIRPSTACK
from devices.lorawan import VOLT_RANGES, uplink
from devices.tts import FAMILY as TTS

T, H, B = Quantity.TEMPERATURE, Quantity.HUMIDITY, Quantity.BATTERY


@pytest.mark.parametrize("family", [CHIRPSTACK, TTS], ids=lambda f: f.name)
def test_dragino_sample_round_trip_puts_the_built_in_sensor_on_sht(family: Family) -> None:
    values: Mapping[str | None, Mapping[Quantity, SampleValue]] = {
        None: {T: 3.02, H: 89.5, B: 100.0},
        "ds": {T: FaultCode.ABSENT_PROBE},
    }
    sample = DeviceSample("a840418371886f2b", 1_715_310_900_000, values, seq=3)
    (publish,) = family.encode(sample)
    message = family.decode(publish.topic, publish.payload)
    readings = {(r.sensor, r.quantity, r.value) for r in message.readings}
    assert readings == {
        ("a840418371886f2b:sht", T, 3.02),
        ("a840418371886f2b:sht", H, 89.5),
        ("a840418371886f2b", B, 100.0),
    }
    assert [(f.sensor, f.code) for f in message.faults] == [
        ("a840418371886f2b:ds", FaultCode.ABSENT_PROBE)
    ]
    assert b'"fPort":2' in publish.payload or b'"f_port":2' in publish.payload


@pytest.mark.parametrize(
    ("field", "raw", "percent"),
    [
        ("BatV", 2.45, 0.0),  # LHT cut-off
        ("BatV", 2.725, 50.0),
        ("BatV", 3.3, 100.0),  # clamped
        ("BAT_V", 2.55, 50.0),  # LDS02: 2.1 .. 3.0 V
        ("vdd", 3200, 50.0),  # Elsys: 2.8 .. 3.6 V in mV
        ("Bat_mV", 2725, 50.0),  # LHT52 status uplink, mV
    ],
)
def test_battery_volts_scale(field: str, raw: float, percent: float) -> None:
    message = uplink("chirpstack", "dev", {field: raw}, None, ts_ms=None, seq=None)
    assert [(r.quantity, r.value) for r in message.readings] == [(B, percent)]


@pytest.mark.parametrize("raw", [0.001, 0.9, 5.1, "12.5"])
def test_impossible_battery_volts_are_faults_not_an_empty_battery(raw: object) -> None:
    message = uplink("chirpstack", "dev", {"BatV": raw}, None, ts_ms=None, seq=None)
    assert message.readings == ()
    assert [(f.quantity, f.code) for f in message.faults] == [(B, FaultCode.OUT_OF_RANGE)]


def test_browan_battery_is_volts_and_lsn50_has_its_own_scale() -> None:
    browan = uplink("tts", "dev", {"status": 0, "battery": 3.05}, None, ts_ms=None, seq=None)
    empty, full, _ = VOLT_RANGES["browan"]
    assert browan.readings[0].value == round((3.05 - empty) / (full - empty) * 100, 1)
    lsn50 = uplink("tts", "dev", {"BatV": 3.05, "ADC_CH0V": 0.1}, None, ts_ms=None, seq=None)
    empty, full, _ = VOLT_RANGES["lsn50"]
    assert lsn50.readings[0].value == round((3.05 - empty) / (full - empty) * 100, 1)


def test_browan_status_is_a_door_only_on_the_door_port() -> None:
    fields = {"status": 1, "battery": 3.6, "temperatureBoard": 21}
    door = uplink("tts", "dev", fields, None, ts_ms=None, seq=None, port=100)
    other = uplink("tts", "dev", fields, None, ts_ms=None, seq=None, port=103)
    assert ("dev", Quantity.DOOR, 1.0) in {(r.sensor, r.quantity, r.value) for r in door.readings}
    assert all(r.quantity is not Quantity.DOOR for r in other.readings)
    assert other.unused == ("status",)


def test_unused_keys_are_bounded() -> None:
    fields = {f"k{i:03d}" + "x" * 100: i for i in range(100)}
    message = uplink("tts", "dev", fields, None, ts_ms=None, seq=None)
    assert message.ignored == "no_known_field"
    assert len(message.unused) == 32
    assert all(len(key) <= 48 for key in message.unused)
