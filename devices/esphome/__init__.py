"""ESPHome nodes on MQTT (``<prefix>/sensor/<object_id>/state`` and ``<prefix>/status``)."""

from devices.esphome.family import FAMILY, ESPHomeFamily

__all__ = ["FAMILY", "ESPHomeFamily"]
