"""From one MQTT message to line-protocol lines: route, decode, validate, enrich.

Runs in the MQTT source's network thread for every message, so it is written for speed:
the topic route is cached, tag strings are precomputed per sensor, readings go straight
to text, and what a receive chunk yields goes to the writer in one call.
Whatever happens, the message ends in exactly one place, and is acknowledged only once
that place is durable: InfluxDB (through the writer), or the dead-letter store.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import OrderedDict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.clock import Clock
from core.lineprotocol import format_float, serialize
from core.registry import DISCOVERED_KEEP, DiscoveredDevice, Registry, payload_text
from core.types import Fault, FieldValue, Message, Point, Quantity, value_type
from devices import DecodeError, Router
from ingest.budget import Budget
from ingest.index import SensorIndex, Target
from ingest.stats import IngestStats
from ingest.writer import BatchWriter, Rejection

log = logging.getLogger(__name__)

# Device timestamps further ahead of the receive time than this are clock errors: corrected
# to the receive time and flagged. Too tight and small device clock drift trips it; too
# loose and future-stamped points hide "now" in Grafana.
FUTURE_TOLERANCE_MS = 5 * 60 * 1000
# Older than this is a clock error too. It must cover the broker's session expiry (7 d)
# plus LoRaWAN datalog back-fill; 35 days.
PAST_TOLERANCE_MS = 35 * 24 * 3600 * 1000
# Discovered devices and dead letters are buffered and written by the writer thread at
# most this often (seconds), not per message.
SIDE_FLUSH_INTERVAL_S = 2.0
# Cap on distinct discovered devices held in memory between flushes: a misbehaving broker
# client inventing device ids must not grow memory without bound.
DISCOVERED_BUFFER_LIMIT = 10_000
# Devices whose recorded unused payload keys are remembered (so that a registered device is
# recorded when it sends a new key, not at every message). Past it the memory is cleared:
# too low and busy fleets rewrite their rows often, too high and a flood of invented
# device ids holds memory (about 200 bytes each).
UNUSED_MEMORY_LIMIT = 200_000
# Readings, faults and statuses of ids the registry does not know are kept in this
# measurement with the id as a *field* (tags: family, quantity): nothing is lost, and a
# device inventing ids creates no series. Under the `sensor` tag, 100k invented ids
# reached InfluxDB's max-values-per-tag, after which every sensor registered later was
# refused (issue 13).
UNREGISTERED = "unregistered"
# Points of one series at one instant overwrite each other. So "unregistered" carries a
# ``bucket`` tag (a hash of the device id) besides family and quantity, and a point whose
# series already has one at its millisecond (two probes of one message, two devices in
# the same millisecond and bucket) is moved on by a millisecond until its time is free.
# Series stay bounded: families x quantities x UNREGISTERED_BUCKETS (~2.3k). More buckets,
# fewer moved points and more series; fewer, the reverse.
UNREGISTERED_BUCKETS = 64
# (series, millisecond) pairs remembered for that. A flood of 10k points a second needs a
# second's worth; more memory remembers collisions further back.
UNREGISTERED_TIMES_KEPT = 200_000
# New devices recorded as discovered per second, with a burst. A chain installs a few
# devices a day; a compromised one inventing ids makes thousands a second. Too low and a
# mass roll-out (hundreds of devices switched on at once) is listed over minutes; too
# high and a flood fills the registry (it also keeps at most DISCOVERED_KEEP).
DISCOVERIES_PER_S = 10.0
DISCOVERIES_BURST = 600.0
# Dead letters stored per second, with a burst (all are counted by reason). A broken
# firmware sends a few a second; more is a flood whose samples add nothing. Too low and
# a second broken device's letters are missing from the list; too high and one device
# fills the registry with 4 kB payloads (DEAD_LETTER_KEEP bounds the total).
DEAD_LETTERS_PER_S = 10.0
DEAD_LETTERS_BURST = 600.0


@value_type
class Observation:
    """What alerting receives for each stored reading, fault or status change."""

    kind: str  # "reading" | "fault" | "status"
    ts_ms: int
    device: str
    sensor: str | None = None
    store: str | None = None
    asset: str | None = None
    asset_type: str | None = None
    quantity: Quantity | None = None
    value: float | None = None
    code: str | None = None


class Pipeline:
    """Decode, validate, enrich; hand lines to the writer and the rest to side stores."""

    def __init__(
        self,
        router: Router,
        index: SensorIndex,
        writer: BatchWriter,
        *,
        stats: IngestStats,
        clock: Clock,
        registry: Registry | None,
        emit_observations: bool = False,
    ) -> None:
        self.router = router
        self.index = index
        self.writer = writer
        self.stats = stats
        self.clock = clock
        self.registry = registry
        self.emit = emit_observations
        self._side_lock = threading.Lock()
        self._dead: list[tuple[float, str, str | None, str, str, str]] = []
        self._discovered: dict[str, DiscoveredDevice] = {}
        # Side records a flood may not grow without bound (DISCOVERIES_PER_S, ...).
        self._discovery_budget = Budget(DISCOVERIES_PER_S, DISCOVERIES_BURST)
        self._dead_budget = Budget(DEAD_LETTERS_PER_S, DEAD_LETTERS_BURST)
        # Device ids recently recorded as discovered (most recent last): known ones are
        # updated freely, new ones spend the discovery budget.
        self._recorded: OrderedDict[str, None] = OrderedDict()
        # Recent (series, millisecond) of unregistered points (UNREGISTERED_TIMES_KEPT).
        self._unregistered_times: OrderedDict[tuple[tuple[str, str, str], int], None] = (
            OrderedDict()
        )
        self._unregistered_lock = threading.Lock()
        # Unused payload keys already recorded per device (network thread only).
        self._unused_seen: dict[str, frozenset[str]] = {}
        self._last_side_flush = 0.0
        self._zones: dict[str, ZoneInfo] = {}
        # Staged by the messages of the current receive chunk (network thread only),
        # handed on by end_chunk(): the receive time, writer input, counts.
        self._now_s: float | None = None
        self._lines: list[str] = []
        self._tokens: list[Any] = []
        self._times: list[int] = []
        self._events: list[Observation] = []
        self._family_counts: dict[str, int] = {}
        self._quantity_counts: dict[Quantity, int] = {}

    # -- the per-message path (the network thread) ------------------------------------

    def handle(self, topic: str, payload: bytes, retained: bool, token: Any) -> None:
        """Process one MQTT message; never raises.

        What it yields is staged: :meth:`end_chunk`, called after the last message of a
        receive chunk, hands the chunk's lines and tokens to the writer in one call, and
        its counts to the metrics (one lock and one clock read per chunk, not per message).
        """
        now_s = self._now_s
        if now_s is None:
            now_s = self._now_s = self.clock.time()
        try:
            self._handle(topic, payload, retained, token, now_s)
        except Exception as exc:  # a bug must not kill the consumer nor lose the message
            log.exception("internal error on topic %s", topic[:200])
            self.stats.internal_errors.inc()
            self._dead_letter(now_s, "internal_error", None, topic, payload, repr(exc)[:300])
            self.pass_on(token)

    def pass_on(self, token: Any) -> None:
        """A message with nothing to write: acknowledged in its turn (staged in order)."""
        self._tokens.append(token)

    def end_chunk(self, caught_up: bool) -> None:
        """Hand what the messages since the last call staged to the writer; count them.

        ``caught_up``: the source has nothing more to read for now (see
        :meth:`BatchWriter.submit_many`).
        """
        if self._now_s is not None:
            self.stats.last_message_at.set(self._now_s)
            self._now_s = None
        if self._family_counts:
            for name, count in self._family_counts.items():
                self.stats.messages.inc(name, amount=count)
            self._family_counts = {}
        if self._quantity_counts:
            for quantity, count in self._quantity_counts.items():
                self.stats.readings.inc(quantity, amount=count)  # a StrEnum: a label value
            self._quantity_counts = {}
        if self._tokens:
            lines, tokens, times, events = self._lines, self._tokens, self._times, self._events
            self._lines, self._tokens, self._times, self._events = [], [], [], []
            self.writer.submit_many(lines, tokens, times, events, caught_up=caught_up)

    def _handle(self, topic: str, payload: bytes, retained: bool, token: Any, now_s: float) -> None:
        family = self.router.route(topic)
        counts = self._family_counts
        if family is None:
            counts["unknown"] = counts.get("unknown", 0) + 1
            self._dead_letter(now_s, "unknown_topic", None, topic, payload, "no family claims it")
            self.pass_on(token)
            return
        counts[family.name] = counts.get(family.name, 0) + 1
        try:
            message = family.decode(topic, payload)
        except DecodeError as exc:
            self._dead_letter(now_s, exc.reason, family.name, topic, payload, exc.detail)
            self.pass_on(token)
            return
        if message.ignored is not None:
            # Nothing to store, but never silently: counted by reason and listed with the
            # device (GET /devices/discovered, `coldchain devices discovered`).
            self.stats.ignored.inc(family.name, message.ignored)
            self._discover(message, family.name, [], topic, payload, now_s)
            self.pass_on(token)
            return
        if retained and (message.readings or message.faults):
            # Replayed by the broker because we subscribed: a value of unknown age. Live
            # publishes reach subscribers with the retain flag cleared.
            self.stats.retained_skipped.inc(family.name)
            self.pass_on(token)
            return
        attribution = None  # rules 2 and 4 of ingest/index.py, worked out when needed
        if message.device_id not in self.index.by_device:
            attribution = _Attribution(self.index, message)
            attribution.recheck()  # registered a moment ago? (its store's zone, its tags)
        now_ms = round(now_s * 1000)
        ts_ms, corrected = self._timestamp(message, now_ms)
        if corrected:
            self.stats.ts_corrected.inc(family.name)
        lines: list[str] = []
        events: list[Observation] = []
        unregistered: list[str] = []
        attribution = self._readings(
            message, ts_ms, corrected, now_ms, lines, events, unregistered, attribution
        )
        if message.faults or message.online is not None:
            self._faults_and_status(
                message, family.name, ts_ms, lines, events, unregistered, attribution
            )
        if unregistered:
            self.stats.unknown_sensor.inc(family.name, amount=len(unregistered))
            self._discover(message, family.name, unregistered, topic, payload, now_s)
        elif message.unused and self._new_unused(message):
            self._discover(message, family.name, [], topic, payload, now_s)
        self._lines += lines
        self._tokens.append(token)
        if message.ts_ms is not None and not corrected:
            self._times.append(ts_ms)
        if events:
            self._events += events

    def _readings(
        self,
        message: Message,
        ts_ms: int,
        corrected: bool,
        now_ms: int,
        lines: list[str],
        events: list[Observation],
        unregistered: list[str],
        attribution: _Attribution | None,
    ) -> _Attribution | None:
        """Append one line per reading and target (the hot loop); returns the message's
        attribution if it needed one."""
        message_suffix = f"{',ts_corrected=true' if corrected else ''} {ts_ms}"
        index = self.index
        by_sensor = index.by_sensor
        counts = self._quantity_counts
        for reading in message.readings:
            quantity = reading.quantity
            suffix, current = message_suffix, True
            if reading.ts_ms is not None:  # a stored record with its own time
                suffix, current = self._record_suffix(reading.ts_ms, now_ms), False
            counts[quantity] = counts.get(quantity, 0) + 1
            found = by_sensor.get(reading.sensor)  # the registered sensor: the common case
            targets = (found,) if found is not None else index.targets(reading.sensor, quantity)
            if not targets:
                if attribution is None:
                    attribution = _Attribution(index, message)
                target = attribution.target(reading.sensor, quantity)
                targets = index.targets(reading.sensor, quantity) if target is None else [target]
            if not targets:
                unregistered.append(reading.sensor)
                at, late = ts_ms, corrected
                if reading.ts_ms is not None:
                    at, late = self._record_time(reading.ts_ms, now_ms)
                lines.append(
                    self._unregistered_line(
                        message.device_id, message.family, quantity.value,
                        (("sensor", reading.sensor), ("value", reading.value)), at, late,
                    )
                )  # fmt: skip
                continue
            for target in targets:
                value = reading.value
                info = target.info
                if quantity is Quantity.TEMPERATURE and info.offset:
                    value = round(value + info.offset, 4)
                # {quantity}: a StrEnum formats as its value (cheaper than .value)
                lines.append(f"{quantity}{target.tags} value={format_float(value)}{suffix}")
                if self.emit and current:  # a record is history, not news for alerting
                    events.append(
                        Observation(
                            "reading", ts_ms, message.device_id, info.sensor, info.store,
                            info.asset, info.asset_type, quantity, value,
                        )
                    )  # fmt: skip
        return attribution

    def _faults_and_status(
        self,
        message: Message,
        family: str,
        ts_ms: int,
        lines: list[str],
        events: list[Observation],
        unregistered: list[str],
        attribution: _Attribution | None,
    ) -> None:
        """Append the lines (and observations) of a message's faults and status."""
        for fault in message.faults:
            self.stats.faults.inc(family, fault.code.value)
            if attribution is None:
                attribution = _Attribution(self.index, message)
            target = attribution.target(fault.sensor, fault.quantity)
            lines.append(self._fault_line(fault, family, ts_ms, target, unregistered))
            if self.emit and target is not None:
                info = target.info
                events.append(
                    Observation(
                        "fault", ts_ms, message.device_id, info.sensor, info.store,
                        info.asset, info.asset_type, fault.quantity, code=fault.code.value,
                    )
                )  # fmt: skip
        if message.online is not None:
            lines.append(self._status_line(message, family, ts_ms))
            device_info = self.index.device_info(message.device_id)
            if self.emit and device_info is not None:  # unknown devices are news to no rule
                events.append(
                    Observation(
                        "status", ts_ms, message.device_id, store=device_info.store,
                        value=1.0 if message.online else 0.0,
                    )
                )  # fmt: skip

    def _record_time(self, record_ms: int, now_ms: int) -> tuple[int, bool]:
        """A stored record's time: its own, unless absurd (then now, corrected)."""
        if record_ms > now_ms + FUTURE_TOLERANCE_MS or record_ms < now_ms - PAST_TOLERANCE_MS:
            return now_ms, True
        return record_ms, False

    def _unregistered_line(
        self, device: str, family: str, quantity: str,
        fields: tuple[tuple[str, FieldValue], ...], ts_ms: int, corrected: bool,
    ) -> str:  # fmt: skip
        """A point of :data:`UNREGISTERED`, moved on until its series' millisecond is free."""
        bucket = str(zlib.crc32(device.encode()) % UNREGISTERED_BUCKETS)
        series = (bucket, family, quantity)
        with self._unregistered_lock:
            while (series, ts_ms) in self._unregistered_times:
                ts_ms += 1
            self._unregistered_times[(series, ts_ms)] = None
            if len(self._unregistered_times) > UNREGISTERED_TIMES_KEPT:
                self._unregistered_times.popitem(last=False)
        flags: tuple[tuple[str, FieldValue], ...] = (("ts_corrected", True),) if corrected else ()
        tags = (("bucket", bucket), ("family", family), ("quantity", quantity))
        line = serialize(Point(UNREGISTERED, tags, fields + flags, ts_ms))
        assert line is not None  # "value" is a finite number or a text
        return line

    def _record_suffix(self, record_ms: int, now_ms: int) -> str:
        """The line-protocol time of a stored record: its own, unless absurd."""
        if record_ms > now_ms + FUTURE_TOLERANCE_MS or record_ms < now_ms - PAST_TOLERANCE_MS:
            return f",ts_corrected=true {now_ms}"
        return f" {record_ms}"

    def _timestamp(self, message: Message, now_ms: int) -> tuple[int, bool]:
        ts = message.ts_ms
        if ts is None and message.local_time is not None:
            ts = self._from_local(message.device_id, message.local_time)
        if ts is None:
            return now_ms, False
        if ts > now_ms + FUTURE_TOLERANCE_MS or ts < now_ms - PAST_TOLERANCE_MS:
            return now_ms, True
        return ts, False

    def _from_local(self, device_id: str, local: datetime) -> int | None:
        """A device wall-clock time (Tasmota) read in its store's timezone."""
        info = self.index.device_info(device_id)
        if info is None:
            return None  # unknown store: the receive time is the honest choice
        zone = self._zones.get(info.timezone)
        if zone is None:
            zone = self._zones.setdefault(info.timezone, ZoneInfo(info.timezone))
        return round(local.replace(tzinfo=zone).timestamp() * 1000)

    def _fault_line(
        self, fault: Fault, family: str, ts_ms: int, target: Target | None,
        unregistered: list[str],
    ) -> str:  # fmt: skip
        """``sensor_fault`` of a registered sensor; an unknown one's goes to
        :data:`UNREGISTERED`, its id and code as fields."""
        if target is None:
            if fault.sensor not in unregistered:
                unregistered.append(fault.sensor)
            return self._unregistered_line(
                fault.sensor.partition(":")[0], family, fault.quantity.value,
                (("fault", fault.code.value), ("raw", fault.raw), ("sensor", fault.sensor),
                 ("value", 1.0)),
                ts_ms, False,
            )  # fmt: skip
        info = target.info
        tags = (
            ("asset", info.asset), ("asset_type", info.asset_type),
            ("code", fault.code.value), ("quantity", fault.quantity.value),
            ("sensor", info.sensor),  # a folded probe's fault is its device's
            ("store", info.store),
        )  # fmt: skip
        point = Point("sensor_fault", tags, (("value", 1.0), ("raw", fault.raw)), ts_ms)
        line = serialize(point)
        assert line is not None  # value=1.0 is always writable
        return line

    def _status_line(self, message: Message, family: str, ts_ms: int) -> str:
        """``device_status`` of a registered device; an unknown one's availability goes to
        :data:`UNREGISTERED` (its id a field: a flood of invented ids makes no series)."""
        value = 1.0 if message.online else 0.0
        info = self.index.device_info(message.device_id)
        if info is None:
            return self._unregistered_line(
                message.device_id, family, "status",
                (("device", message.device_id), ("value", value)), ts_ms, False,
            )  # fmt: skip
        tags = (("device", message.device_id), ("family", family), ("store", info.store))
        point = Point("device_status", tags, (("value", value),), ts_ms)
        line = serialize(point)
        assert line is not None
        return line

    # -- side records: dead letters and discovered devices ----------------------------

    def _dead_letter(
        self, now_s: float, reason: str, family: str | None, topic: str, payload: bytes, detail: str
    ) -> None:
        self.stats.dead_letters.inc(reason)
        if not self._dead_budget.take():
            self.stats.side_dropped.inc("dead_letter")  # counted above, not stored
            return
        with self._side_lock:
            self._dead.append((now_s, reason, family, topic[:512], payload_text(payload), detail))

    def _discover(
        self,
        message: Message,
        family: str,
        sensors: list[str],
        topic: str,
        payload: bytes,
        now_s: float,
    ) -> None:
        """Buffer what the device listing must show: its unregistered sensors, what each
        of its sensor ids reported, ignored messages by reason, unused payload keys."""
        quantities: dict[str, set[str]] = {}
        for reading in message.readings:
            quantities.setdefault(reading.sensor, set()).add(reading.quantity.value)
        for fault in message.faults:
            quantities.setdefault(fault.sensor, set()).add(fault.quantity.value)
        with self._side_lock:
            known = self._discovered.get(message.device_id)
            if known is None and len(self._discovered) >= DISCOVERED_BUFFER_LIMIT:
                return  # counted in unknown_sensor / ignored; flushed buffers make room again
            if (
                known is None
                and message.device_id not in self._recorded
                and not self._discovery_budget.take()
            ):
                self.stats.side_dropped.inc("discovered")  # a flood of invented ids
                return
            merged = sorted(set(known.sensors if known else []) | set(sensors))
            kinds = {k: set(v) for k, v in (known.quantities if known else {}).items()}
            for sensor, seen in quantities.items():
                kinds.setdefault(sensor, set()).update(seen)
            ignored = dict(known.ignored) if known else {}
            last_ignored = known.last_ignored if known else ""
            if message.ignored is not None:
                ignored[message.ignored] = ignored.get(message.ignored, 0) + 1
                last_ignored = f"{message.ignored}: {message.detail}"
            unused = sorted(set(known.unused if known else []) | set(message.unused))
            self._discovered[message.device_id] = DiscoveredDevice(
                device_id=message.device_id,
                family=family,
                first_seen=known.first_seen if known else now_s,
                last_seen=now_s,
                messages=(known.messages if known else 0) + 1,
                sensors=merged,
                last_topic=topic[:512],
                last_payload=payload_text(payload),
                ignored=ignored,
                last_ignored=last_ignored,
                unused=unused,
                quantities={k: sorted(v) for k, v in kinds.items()},
            )

    def _new_unused(self, message: Message) -> bool:
        """Whether a stored message brings payload keys not yet listed for its device.

        Registered devices are recorded only then, not on every message: a fleet of
        LHT65Ns each sending a timestamp field coldchain does not store would otherwise
        rewrite every device's row at every flush.
        """
        seen = self._unused_seen.get(message.device_id)
        if seen is not None and seen.issuperset(message.unused):
            return False
        if len(self._unused_seen) >= UNUSED_MEMORY_LIMIT:
            self._unused_seen.clear()  # bounded; some devices are re-recorded once
        self._unused_seen[message.device_id] = (seen or frozenset()) | frozenset(message.unused)
        return True

    def record_rejections(self, rejections: list[Rejection] | Any) -> None:
        """Dead-letter lines InfluxDB refused (called by the writer)."""
        now_s = self.clock.time()
        with self._side_lock:
            for item in rejections:
                self._dead.append(
                    (now_s, "influx_rejected", None, "", item.line[:4096], item.reason[:300])
                )

    def flush_dead_letters(self) -> None:
        """Persist buffered dead letters; the writer calls it before acknowledging."""
        if self.registry is None:
            return
        with self._side_lock:
            dead, self._dead = self._dead, []
        if dead:
            self.registry.add_dead_letters(dead)

    def housekeeping(self, *, force: bool = False) -> None:
        """Periodic work on the writer thread: index refresh, discovered devices."""
        now = time.monotonic()
        if not force and now - self._last_side_flush < SIDE_FLUSH_INTERVAL_S:
            return
        self._last_side_flush = now
        self.index.refresh()
        self.flush_dead_letters()
        with self._side_lock:
            found = list(self._discovered.values())
            self._discovered = {}
            for device in found:
                self._recorded[device.device_id] = None
                self._recorded.move_to_end(device.device_id)
            while len(self._recorded) > DISCOVERED_KEEP:
                self._recorded.popitem(last=False)
        if found and self.registry is not None:
            self.registry.record_discovered(found)


class _Attribution:
    """Rules 2 and 4 of :mod:`ingest.index` for one message, worked out on the first id the
    snapshot does not know (registered messages never get here)."""

    __slots__ = ("_channel", "_checked", "_done", "_index", "_message", "_target")

    def __init__(self, index: SensorIndex, message: Message) -> None:
        self._index = index
        self._message = message
        self._checked = False
        self._done = False
        self._channel: str | None = None
        self._target: Target | None = None

    def recheck(self) -> None:
        """Re-read the registry version once for this message (registration takes effect
        on the next message; rate-bounded in :meth:`SensorIndex.recheck`)."""
        if not self._checked:
            self._checked = True
            self._index.recheck()

    def target(self, sensor: str, quantity: Quantity) -> Target | None:
        """The registered sensor ``sensor``'s value goes to, or None (unregistered)."""
        index = self._index
        found = index.by_sensor.get(sensor)
        if found is not None:
            return found
        if not self._done:
            self._done = True
            self.recheck()
            if (found := index.by_sensor.get(sensor)) is not None:
                return found
            message = self._message
            self._channel, self._target, _ = index.fold(
                message.device_id, message.readings, message.faults
            )
        if sensor == self._channel and quantity not in (Quantity.SIGNAL,):
            return self._target
        return index.by_sensor.get(sensor)
