"""coldchain's own MQTT format (``coldchain/v1/<device_id>/telemetry`` and ``/status``)."""

from devices.native.family import FAMILY, NativeFamily

__all__ = ["FAMILY", "NativeFamily"]
