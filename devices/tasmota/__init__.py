"""Tasmota telemetry (``tele/<topic>/SENSOR``, ``STATE`` and ``LWT``)."""

from devices.tasmota.family import FAMILY, TasmotaFamily

__all__ = ["FAMILY", "TasmotaFamily"]
