"""The Things Stack v3 uplinks (``v3/<app>@<tenant>/devices/<device>/up``)."""

from devices.tts.family import FAMILY, TTSFamily

__all__ = ["FAMILY", "TTSFamily"]
