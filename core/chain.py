"""The chain file: stores, assets, sensors, contacts and escalation policies (DESIGN.md §3).

Operators keep it in version control; scenarios seed it; ``coldchain registry import``
upserts it. Validation happens at load and every error names the path and the value, e.g.
``stores[s042].hours.sun: end 06:00 before start 22:00``.
"""

from __future__ import annotations

import re
from datetime import date, time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from core.errors import ConfigError

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
# Sensor ids follow device ids: ESPHome node names, Tasmota topics, Shelly ids, DevEUIs,
# plus ":<channel>" (Tasmota "DS18B20-2", Shelly "temperature:101", ESPHome object ids).
_SENSOR_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}(:[A-Za-z0-9_.\-:]{1,64})?$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_Date = date  # CalendarDay has a field named `date`, which shadows the type
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class AssetType(StrEnum):
    """The refrigerated unit types of DESIGN.md §3."""

    DAIRY_CASE = "dairy_case"
    MEAT_CASE = "meat_case"
    PRODUCE_CASE = "produce_case"
    FROZEN_CASE = "frozen_case"
    ICE_CREAM_CASE = "ice_cream_case"
    WALKIN_COOLER = "walkin_cooler"
    WALKIN_FREEZER = "walkin_freezer"
    PHARMACY_FRIDGE = "pharmacy_fridge"


def parse_duration(value: Any) -> float:
    """Seconds from ``"30m"``, ``"2h"``, ``"90s"``, ``"1d"`` or a number of seconds."""
    if isinstance(value, bool):  # pydantic validators must raise ValueError, not TypeError
        raise ValueError(f"duration {value!r} is not a number or '30m'-style text")  # noqa: TRY004
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    else:
        raise ValueError(f"duration {value!r} must look like 90s, 30m, 2h or 1d")
    if seconds <= 0:
        raise ValueError(f"duration {value!r} must be positive")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest of ``"2h"``, ``"30m"``, ``"90s"`` that is exact."""
    for unit in ("d", "h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{int(seconds // _UNIT_SECONDS[unit])}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Model(BaseModel):
    # allow_inf_nan=False: a NaN limit compares false with every reading, so a threshold
    # of NaN (or an infinite offset) would silently disable an alarm.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _parse_clock(text: str) -> time:
    if text == "24:00":
        return time(23, 59, 59, 999999)
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a HH:MM time") from None


def parse_day_spec(spec: str) -> list[int]:
    """``"mon-sat"`` -> [0..5]; ``"sun"`` -> [6]; ``"mon,wed"`` -> [0, 2]."""
    days: list[int] = []
    for part in spec.lower().replace(" ", "").split(","):
        first, sep, last = part.partition("-")
        if first not in DAYS or (sep and last not in DAYS):
            raise ValueError(f"day {part!r} must be mon..sun, a range like mon-sat, or a list")
        a, b = DAYS.index(first), DAYS.index(last) if sep else DAYS.index(first)
        if b < a:
            raise ValueError(f"day range {part!r} goes backwards")
        days.extend(range(a, b + 1))
    return days


def parse_hours_value(text: str) -> list[tuple[time, time]]:
    """``"07:00-21:00"`` or ``"07:00-13:00,15:00-21:00"`` or ``"closed"``."""
    if text.strip().lower() == "closed":
        return []
    ranges = []
    for part in text.split(","):
        start_s, sep, end_s = part.strip().partition("-")
        if not sep:
            raise ValueError(f"{part.strip()!r} must look like 07:00-21:00")
        start, end = _parse_clock(start_s), _parse_clock(end_s)
        if end <= start:
            raise ValueError(f"end {end_s} before start {start_s}")
        ranges.append((start, end))
    return ranges


class CalendarDay(_Model):
    """A day (or, with ``until``, a season) that weighs more or less than usual.

    Peaks such as Mother's Day or the Christmas season carry more stock at risk; a weight
    of 2.0 halves excursion budgets and escalation waits for the whole local day(s).
    """

    date: date
    until: _Date | None = None  # inclusive last day of a season
    name: str = Field(min_length=1, max_length=80)
    weight: float = Field(default=1.0, gt=0, le=10)

    @model_validator(mode="after")
    def _range(self) -> CalendarDay:
        if self.until is not None and self.until < self.date:
            raise ValueError(f"until {self.until} before date {self.date}")
        return self


class Thresholds(_Model):
    """Per-store or per-asset overrides of the asset type's alarm profile (°C, minutes)."""

    warn_above: float | None = None
    warn_below: float | None = None
    critical_above: float | None = None
    critical_below: float | None = None
    hard_ceiling: float | None = None  # any reading above fires critical at once
    hard_floor: float | None = None  # any reading below fires critical at once
    warn_budget: Duration | None = None  # minutes of excursion (degree-minutes / 1 K)
    critical_budget: Duration | None = None


class Defrost(_Model):
    """A scheduled defrost: local start times and duration, plus recovery allowance."""

    times: list[str] = Field(min_length=1, max_length=12)
    duration: Duration = 30 * 60
    recovery: Duration = 30 * 60

    @field_validator("times")
    @classmethod
    def _times(cls, value: list[str]) -> list[str]:
        for text in value:
            _parse_clock(text)
        return value


class Store(_Model):
    """A store: where it is, when it is open, which days weigh more."""

    id: str = Field(pattern=_ID)
    name: str = Field(min_length=1, max_length=120)
    country: str = Field(default="US", pattern=r"^[A-Z]{2}$")
    timezone: str = "UTC"
    language: Literal["es", "pt", "en"] = "es"
    hours: dict[str, str] = Field(default_factory=dict)
    calendar: list[CalendarDay] = Field(default_factory=list)
    policy: str | None = None
    thresholds: dict[AssetType, Thresholds] = Field(default_factory=dict)
    # Local times the HACCP record shows each unit's reading at (the manual check rounds
    # a continuous sensor replaces; WHO asks for pharmacy fridges twice a day).
    check_times: list[str] = Field(default_factory=lambda: ["08:00", "20:00"], max_length=24)

    @field_validator("check_times")
    @classmethod
    def _check_times(cls, value: list[str]) -> list[str]:
        for text in value:
            if text == "24:00":
                raise ValueError("24:00 is not a check time (use 00:00 or 23:59)")
            _parse_clock(text)
        return sorted(set(value))

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r} (use an IANA name)") from None
        return value

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: dict[str, str]) -> dict[str, str]:
        seen: dict[int, str] = {}
        for spec, ranges in value.items():
            try:
                days = parse_day_spec(spec)
                parse_hours_value(ranges)
            except ValueError as exc:
                raise ValueError(f"{spec}: {exc}") from None
            for day in days:
                if day in seen:
                    raise ValueError(f"{spec}: {DAYS[day]} already set by {seen[day]!r}")
                seen[day] = spec
        return value

    def opening_hours(self) -> dict[int, list[tuple[time, time]]]:
        """Weekday (0 = Monday) -> open ranges in local time; absent days are closed."""
        out: dict[int, list[tuple[time, time]]] = {}
        for spec, ranges in self.hours.items():
            for day in parse_day_spec(spec):
                out[day] = parse_hours_value(ranges)
        return out


class Asset(_Model):
    """A refrigerated unit in a store."""

    id: str = Field(pattern=_ID)
    store: str = Field(pattern=_ID)
    type: AssetType
    name: str = Field(min_length=1, max_length=120)
    policy: str | None = None
    thresholds: Thresholds | None = None
    defrost: Defrost | None = None


class Sensor(_Model):
    """A probe or entity on a device, attached to an asset."""

    id: str = Field(pattern=_SENSOR_ID)
    asset: str = Field(pattern=_ID)
    family: str | None = Field(default=None, pattern=r"^[a-z0-9_]+$")
    offset: float = Field(default=0.0, ge=-10, le=10)  # °C added to temperature readings
    interval: Duration = 300.0  # expected reporting interval; silence after ~3x
    calibrated_at: date | None = None
    calibration_due: date | None = None


class Contact(_Model):
    """A person or desk that can be paged."""

    id: str = Field(pattern=_ID)
    name: str = Field(min_length=1, max_length=120)
    phone: str = Field(pattern=r"^\+[1-9]\d{6,14}$")
    channel: Literal["sms", "whatsapp", "voice"] = "sms"
    roles: list[str] = Field(min_length=1)
    stores: list[str] = Field(default_factory=list)  # empty: every store
    language: Literal["es", "pt", "en"] | None = None  # default: the store's


class PolicyStep(_Model):
    """One escalation step: who to notify, then how long to wait (or repeat every)."""

    notify: list[str] = Field(min_length=1)  # roles or contact ids
    wait: Duration | None = None
    repeat: Duration | None = None
    channel: Literal["sms", "whatsapp", "voice"] | None = None  # default: the contact's

    @model_validator(mode="after")
    def _timing(self) -> PolicyStep:
        if self.wait is not None and self.repeat is not None:
            raise ValueError("a step has either wait or repeat, not both")
        return self


class Policy(_Model):
    """An escalation policy: a chain of steps, frozen onto each alert when it opens."""

    id: str = Field(pattern=_ID)
    steps: list[PolicyStep] = Field(min_length=1)


class Chain(_Model):
    """A whole chain file."""

    stores: list[Store] = Field(default_factory=list)
    assets: list[Asset] = Field(default_factory=list)
    sensors: list[Sensor] = Field(default_factory=list)
    contacts: list[Contact] = Field(default_factory=list)
    policies: list[Policy] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> Chain:
        errors = self._duplicates() + self._dangling()
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def _duplicates(self) -> list[str]:
        errors: list[str] = []
        for kind in ("stores", "assets", "sensors", "contacts", "policies"):
            seen: set[str] = set()
            for item in getattr(self, kind):
                if item.id in seen:
                    errors.append(f"{kind}[{item.id}]: duplicate id")
                seen.add(item.id)
        return errors

    def _dangling(self) -> list[str]:
        """References to ids the file does not define (checked when it defines any)."""
        errors: list[str] = []
        stores = {s.id for s in self.stores}
        assets = {a.id for a in self.assets}
        policies = {p.id for p in self.policies}
        for asset in self.assets:
            if stores and asset.store not in stores:
                errors.append(f"assets[{asset.id}].store: unknown store {asset.store!r}")
            if asset.policy and policies and asset.policy not in policies:
                errors.append(f"assets[{asset.id}].policy: unknown policy {asset.policy!r}")
        for store in self.stores:
            if store.policy and policies and store.policy not in policies:
                errors.append(f"stores[{store.id}].policy: unknown policy {store.policy!r}")
        for sensor in self.sensors:
            if assets and sensor.asset not in assets:
                errors.append(f"sensors[{sensor.id}].asset: unknown asset {sensor.asset!r}")
        for contact in self.contacts:
            for store_id in contact.stores:
                if stores and store_id not in stores:
                    errors.append(f"contacts[{contact.id}].stores: unknown store {store_id!r}")
        return errors


def _location(loc: tuple[int | str, ...], data: Any) -> str:
    """``("stores", 0, "hours")`` -> ``stores[s042].hours`` using ids where possible."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and part < len(node) else None
            ident = item.get("id") if isinstance(item, dict) else None
            out += f"[{ident}]" if ident else f"[{part}]"
            node = item
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out


def parse_chain(data: Any, source: str = "chain file") -> Chain:
    """Validate a parsed chain document.

    Raises:
        ConfigError: every problem, each naming its path and value.
    """
    try:
        return Chain.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = _location(tuple(err["loc"]), data)
            message = err["msg"].removeprefix("Value error, ")
            shown = err.get("input")
            value = f" (got {shown!r})" if isinstance(shown, str | int | float) and where else ""
            problems.append(f"{where}: {message}{value}" if where else message)
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None


def load_chain(path: Path) -> Chain:
    """Read and validate a chain file (YAML)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    if isinstance(data, dict) and "chain" in data and isinstance(data["chain"], dict):
        data = data["chain"]  # a scenario file embeds its chain under "chain:"
    return parse_chain(data, str(path))


def dump_chain(chain: Chain) -> str:
    """The chain as YAML, durations written back as ``30m``/``2h``."""

    def clean(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: clean(v, k) for k, v in value.items() if v not in (None, [], {})}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if key in {"wait", "repeat", "interval", "duration", "recovery"} and isinstance(
            value, float
        ):
            return format_duration(value)
        if key in {"warn_budget", "critical_budget"} and isinstance(value, float):
            return format_duration(value)
        return value

    data = clean(chain.model_dump(mode="json", exclude_defaults=False))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
