"""Device families: one subpackage each, discovered at import (see :mod:`devices.base`).

Public surface: :func:`families`, :class:`Router`, and the contract types re-exported
from :mod:`devices.base`.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from devices.base import DecodeError, DeviceSample, Family, Profile, Publish

__all__ = [
    "DecodeError",
    "DeviceSample",
    "Family",
    "Profile",
    "Publish",
    "Router",
    "families",
    "family",
]


@cache
def families() -> tuple[Family, ...]:
    """Every family under ``devices/``, in name order (each subpackage's ``FAMILY``)."""
    found: list[Family] = []
    for info in pkgutil.iter_modules(__path__):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        plugin = getattr(module, "FAMILY", None)
        if plugin is not None:
            found.append(plugin)
    return tuple(sorted(found, key=lambda f: f.name))


def family(name: str) -> Family:
    """The family called ``name``; KeyError names the known ones."""
    for candidate in families():
        if candidate.name == name:
            return candidate
    known = ", ".join(f.name for f in families())
    raise KeyError(f"unknown device family {name!r} (known: {known})")


class Router:
    """Finds the family of a topic; remembers the answer per topic (topics repeat)."""

    # Topics are bounded by the fleet (a few per device); the cache is cleared past this
    # size so a flood of junk topics cannot grow memory without bound.
    _CACHE_LIMIT = 500_000

    def __init__(self, members: tuple[Family, ...] | None = None) -> None:
        self.members = families() if members is None else members
        self._cache: dict[str, Family | None] = {}

    @property
    def subscriptions(self) -> list[str]:
        """All topic filters, deduplicated, in family order."""
        seen: dict[str, None] = {}
        for member in self.members:
            for topic in member.subscriptions:
                seen.setdefault(topic, None)
        return list(seen)

    def route(self, topic: str) -> Family | None:
        """The family that owns ``topic``, or None."""
        try:
            return self._cache[topic]
        except KeyError:
            pass
        levels = topic.split("/")
        owner = next((m for m in self.members if m.matches(levels)), None)
        if len(self._cache) >= self._CACHE_LIMIT:
            self._cache.clear()
        self._cache[topic] = owner
        return owner
