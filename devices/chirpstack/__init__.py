"""ChirpStack v4 uplinks (``application/<app>/device/<devEUI>/event/up``)."""

from devices.chirpstack.family import FAMILY, ChirpStackFamily

__all__ = ["FAMILY", "ChirpStackFamily"]
