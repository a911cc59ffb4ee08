"""Shelly Gen2 / Plus devices (``<shelly-id>/events/rpc`` and ``<shelly-id>/online``)."""

from devices.shelly.family import FAMILY, ShellyFamily

__all__ = ["FAMILY", "ShellyFamily"]
