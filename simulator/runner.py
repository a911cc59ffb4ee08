"""Runs a scenario: the thermal model, the sensors, the timeline, the devices' MQTT output.

One :class:`~simulator.physics.ThermalModel` unit per asset and one probe per sensor
(reading its unit's air), stepped in simulated time. Each sensor reports at its own
interval (with a random phase) in its device family's native format, produced by the
family's own encoder. Power cuts silence a store's devices and publish their LWT
``offline``; network drops buffer readings and replay them late (with their device
timestamps, for families that carry one).

Three ways to pace it: real time (``speed=1``), accelerated (``speed=600`` runs a day in
2.4 minutes; readings carry simulated time), or as fast as possible (``speed=None``). A
``on_step`` hook lets a test run in lockstep with ingest and alerting on a shared clock.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

import devices
from core.chain import Chain, parse_hours_value
from core.types import FaultCode, Quantity, split_sensor_id
from devices.base import DeviceSample, Family, Publish, SampleValue
from simulator.noise import Noise
from simulator.physics import ThermalModel, ambient_c
from simulator.scenario import Scenario, TimelineEvent
from simulator.sensors import SensorBank, fault_code

# Humidity of a refrigerated case's air, roughly (research §C.8 mentions 80-95 % RH in
# coolers); only its presence matters to coldchain, not its physics.
HUMIDITY_PCT = 86.0
SIGNAL_DBM = -67.0


@dataclass
class _Sensor:
    index: int
    sensor: str
    device: str
    channel: str | None
    family: Family
    unit: int
    store: str
    interval_s: float
    next_due: float
    quantities: tuple[Quantity, ...]


@dataclass
class StepReport:
    """What one step did (for lockstep callers and progress lines)."""

    sim_time: float
    published: int
    events: list[str]


class Runner:
    """Steps one scenario; see the module docstring."""

    def __init__(
        self,
        scenario: Scenario,
        publish: Callable[[Publish], None],
        *,
        speed: float | None = None,
        on_step: Callable[[StepReport], None] | None = None,
        noise: Noise | None = None,
    ) -> None:
        self.scenario = scenario
        self.noise = noise
        self.chain: Chain = scenario.full_chain()
        self.publish = publish
        self.speed = speed
        self.on_step = on_step
        self.rng = np.random.default_rng(scenario.simulation.seed)
        self.start_s = scenario.start().timestamp()
        self.end_s = scenario.end().timestamp()
        self.step_s = scenario.simulation.step
        self.stores = {s.id: s for s in self.chain.stores}
        self.zones = {s.id: ZoneInfo(s.timezone) for s in self.chain.stores}
        self.hours = {s.id: s.opening_hours() for s in self.chain.stores}
        assets = list(self.chain.assets)
        self.asset_index = {a.id: i for i, a in enumerate(assets)}
        self.asset_store = np.array([a.store for a in assets])
        self.unit_store = [a.store for a in assets]
        self.model = ThermalModel(
            [a.type for a in assets], self.rng, start_tod_s=self._tods(self.start_s)
        )
        for i, asset in enumerate(assets):
            # Scenarios declare every defrost: rules only know scheduled ones (a unit with
            # none declared does not defrost here, or every defrost would be an alarm).
            if asset.defrost is not None:
                starts = [self._clock_s(t) for t in asset.defrost.times]
                self.model.set_defrost_schedule(i, starts, asset.defrost.duration)
            else:
                self.model.set_defrost_schedule(i, [], 60.0)
        families = {f.name: f for f in devices.families()}
        self.sensors: list[_Sensor] = []
        for sensor in self.chain.sensors:
            device, channel = split_sensor_id(sensor.id)
            family = families[sensor.family or "native"]
            unit = self.asset_index[sensor.asset]
            layout = family.layout.get(channel)
            quantities = layout if layout else (Quantity.TEMPERATURE,)
            self.sensors.append(
                _Sensor(
                    index=len(self.sensors), sensor=sensor.id, device=device, channel=channel,
                    family=family, unit=unit, store=self.unit_store[unit],
                    interval_s=sensor.interval,
                    next_due=self.start_s + float(self.rng.uniform(0, sensor.interval)),
                    quantities=quantities,
                )
            )  # fmt: skip
        self.bank = SensorBank(len(self.sensors), self.rng)
        self.by_sensor = {s.sensor: s for s in self.sensors}
        self.device_store = {s.device: s.store for s in self.sensors}
        self.device_family = {s.device: s.family for s in self.sensors}
        self.timeline = sorted(
            ((scenario.when(e).timestamp(), i, e) for i, e in enumerate(scenario.timeline)),
            key=lambda item: (item[0], item[1]),
        )
        self.powered_off: set[str] = set()
        self.network_down: dict[str, bool] = {}  # store -> replay
        self.buffered: dict[str, list[DeviceSample]] = defaultdict(list)
        self.seq: dict[str, int] = defaultdict(int)
        self.now = self.start_s
        self.published = 0

    # -- time helpers -------------------------------------------------------------------

    @staticmethod
    def _clock_s(text: str) -> float:
        start, _ = parse_hours_value(f"{text}-23:59")[0]
        return start.hour * 3600.0 + start.minute * 60.0

    def _local(self, store: str, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, self.zones[store])

    def _tods(self, ts: float) -> np.ndarray:
        values = {}
        for store in self.stores:
            local = self._local(store, ts)
            values[store] = local.hour * 3600 + local.minute * 60 + local.second
        return np.array([values[s] for s in self.unit_store], dtype=np.float64)

    def _open(self, ts: float) -> np.ndarray:
        state = {}
        for store, hours in self.hours.items():
            local = self._local(store, ts)
            ranges = hours.get(local.weekday(), []) if hours else None
            state[store] = True if ranges is None else any(a <= local.time() < b for a, b in ranges)
        return np.array([state[s] for s in self.unit_store], dtype=np.bool_)

    # -- the loop -----------------------------------------------------------------------

    def statuses(self, online: bool) -> list[Publish]:
        """Every LWT device's availability message (published at start: birth)."""
        seen: dict[str, Publish] = {}
        for s in self.sensors:
            if s.family.profile.availability == "lwt" and s.device not in seen:
                seen[s.device] = s.family.encode_status(s.device, online)
        return list(seen.values())

    def run(self) -> int:
        """Run to the end; returns how many messages were published."""
        for message in self.statuses(online=True):
            self._send(message)
        wall0 = time.monotonic()
        while self.now < self.end_s:
            self.step()
            if self.speed:
                due = wall0 + (self.now - self.start_s) / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        return self.published

    def step(self) -> StepReport:
        """Advance one step: events, physics, readings."""
        before = self.published
        self.now += self.step_s
        events = self._apply_events(self.now)
        open_now = self._open(self.now)
        hours = self._tods(self.now) / 3600.0
        sim = self.scenario.simulation
        ambient = ambient_c(
            hours, base=sim.ambient_c, setback_k=sim.night_setback_k, store_open=open_now
        )
        self.model.step(self.step_s, open_now, ambient, self._tods(self.now))
        self._report(self.now)
        if self.noise is not None:
            for message in self.noise.step(self.now, self.step_s):
                self._send(message)
        report = StepReport(self.now, self.published - before, events)
        if self.on_step is not None:
            self.on_step(report)
        return report

    def _report(self, now: float) -> None:
        due = [s for s in self.sensors if s.next_due <= now]
        if not due:
            return
        air = self.model.air_c
        values, codes = self.bank.read(air[[s.unit for s in self.sensors]], now)
        door = self.model.door_open
        battery = self.bank.battery_pct
        samples: dict[str, dict[str | None, dict[Quantity, SampleValue]]] = defaultdict(dict)
        family_of: dict[str, Family] = {}
        for s in due:
            s.next_due += s.interval_s
            if s.store in self.powered_off:
                continue
            code = fault_code(int(codes[s.index]))
            channel_values: dict[Quantity, SampleValue] = {}
            for quantity in s.quantities:
                if quantity is Quantity.TEMPERATURE:
                    channel_values[quantity] = code if code else round(float(values[s.index]), 2)
                elif quantity is Quantity.HUMIDITY:
                    channel_values[quantity] = HUMIDITY_PCT
                elif quantity is Quantity.DOOR:
                    channel_values[quantity] = 1.0 if door[s.unit] else 0.0
                elif quantity is Quantity.BATTERY:
                    channel_values[quantity] = round(float(battery[s.index]), 1)
                elif quantity is Quantity.SIGNAL:
                    channel_values[quantity] = SIGNAL_DBM
            samples[s.device][s.channel] = channel_values
            family_of[s.device] = s.family
        ts_ms = round(now * 1000)
        for device, channels in samples.items():
            self.seq[device] += 1
            store = self.device_store[device]
            zone = self.stores[store].timezone
            sample = DeviceSample(device, ts_ms, channels, seq=self.seq[device], zone=zone)
            if store in self.network_down:
                if self.network_down[store] and family_of[device].profile.has_timestamp:
                    self.buffered[store].append(sample)
                continue
            for message in family_of[device].encode(sample):
                self._send(message)
                if self.noise is not None:
                    self.noise.record(message, family_of[device])

    def _send(self, message: Publish) -> None:
        self.publish(message)
        self.published += 1

    # -- timeline -------------------------------------------------------------------------

    def _apply_events(self, now: float) -> list[str]:
        done = []
        while self.timeline and self.timeline[0][0] <= now:
            _, _, event = self.timeline.pop(0)
            self._apply(event)
            done.append(f"{event.event} {event.asset or event.sensor or event.store}")
        return done

    def _units_of(self, store: str) -> list[int]:
        return [i for i, s in enumerate(self.unit_store) if s == store]

    def _apply(self, e: TimelineEvent) -> None:
        probe = self.by_sensor.get(e.sensor or "")
        if e.asset is not None and e.asset not in self.asset_index:
            raise ValueError(f"timeline event {e.event}: unknown asset {e.asset!r}")
        unit = self.asset_index.get(e.asset or "", 0)
        match e.event:
            case "compressor_failure":
                self.model.fail_compressor(unit)
            case "fan_failure":
                self.model.fail_fan(unit)
            case "refrigerant_leak":
                self.model.start_leak(unit, e.amount if e.amount is not None else 0.2)
            case "door_ajar":
                self.model.door_ajar(unit, on=True)
            case "door_closed":
                self.model.door_ajar(unit, on=False)
            case "defrost_stuck":
                self.model.stick_defrost(unit)
            case "repair":
                self.model.repair(unit)
            case "power_outage":
                self._power(e.store or "", on=False)
            case "power_restored":
                self._power(e.store or "", on=True)
            case "network_drop":
                self.network_down[e.store or ""] = e.replay
            case "network_restored":
                self._network_back(e.store or "")
            case "sensor_fault":
                self._fault(probe, e)
            case "sensor_ok":
                if probe is not None:
                    self.bank.clear(probe.index)

    def _power(self, store: str, *, on: bool) -> None:
        units = self._units_of(store)
        if units:
            self.model.power(units, on)
        devices_ = {s.device: s.family for s in self.sensors if s.store == store}
        if on:
            self.powered_off.discard(store)
        else:
            self.powered_off.add(store)
        for device, family in devices_.items():
            if family.profile.availability == "lwt":
                # The broker publishes the will ~1.5 keepalives after power is lost; the
                # device publishes its birth when it is back.
                self._send(family.encode_status(device, on))

    def _network_back(self, store: str) -> None:
        replay = self.network_down.pop(store, False)
        samples = self.buffered.pop(store, [])
        if not replay:
            return
        for sample in samples:
            for message in self.device_family[sample.device_id].encode(sample):
                self._send(message)

    def _fault(self, probe: _Sensor | None, e: TimelineEvent) -> None:
        if probe is None:
            return
        index = probe.index
        match e.fault:
            case "power_on_85":
                self.bank.fault_85(index, e.amount)
            case "disconnected":
                self.bank.disconnect(index, FaultCode.DISCONNECTED)
            case "nan":
                self.bank.disconnect(index, FaultCode.NAN)
            case "null":
                self.bank.disconnect(index, FaultCode.NULL)
            case "stuck":
                self.bank.stick(index)
            case "spikes":
                self.bank.spikes(index, e.amount if e.amount is not None else 0.1)
            case "drift":
                self.bank.drift(index, e.amount if e.amount is not None else 0.5)


def local_label(ts: float, zone: ZoneInfo) -> str:
    """``23:10`` style label of a simulated instant."""
    return (datetime.fromtimestamp(ts, zone)).strftime("%H:%M")
