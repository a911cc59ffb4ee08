"""The alerting engine: rules -> alert book -> pipeline stages -> escalation -> delivery.

Driven from outside, never by its own clock reads:

- :meth:`AlertingEngine.observe` with the observations ingest made durable (in-process in
  ``coldchain run``), evaluated at once so a reading that spends a budget reaches the
  notifier in milliseconds;
- :meth:`AlertingEngine.tick` by the scheduler (APScheduler in production, by hand in
  tests), for time-based rules and due escalation steps.

Escalation follows STYLE.md §2: the policy is frozen onto the alert when it opens; a due
step re-reads the alert, runs one step, writes its notifications as *pending* and an audit
entry in the same transaction, then schedules the next. Delivery happens after the commit,
in its own thread; pending notifications are resumed at start-up. So a restart neither
repeats a step nor skips one (a crash between a provider accepting a message and the
"sent" mark can, rarely, repeat that one message: docs/design/alerting.md).

Chain-wide alerts (a ``pipeline_stalled``, on the reserved store
:data:`alerting.conditions.CHAIN_STORE`) follow the ``pipeline`` policy if the chain defines
one, else :data:`PIPELINE_POLICY` (on-call only); their recipients are the contacts with
the role whatever stores they cover, and their texts use the chain's most common store
language and timezone (:meth:`AlertingEngine._place`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from alerting import acks, commands, escalation, messages, pipeline, warmup
from alerting.acks import AckReply
from alerting.book import (
    ACKNOWLEDGED,
    FIRING,
    Alert,
    AlertBook,
    Notification,
    Outgoing,
    Page,
    StepRecord,
)
from alerting.conditions import (
    CALIBRATION_DUE,
    CHAIN_STORE,
    DOOR_OPEN,
    LEVELS,
    PIPELINE_STALLED,
    STORE_OUTAGE,
    Condition,
    Transition,
)
from alerting.delivery import Delivery
from alerting.escalation import Place
from alerting.health import AlertingHealth
from alerting.lease import Lease, LeaseLost
from alerting.notifiers.base import Notifier
from alerting.rules import RuleEngine
from alerting.rules.defrost import LEARN_HISTORY_S
from alerting.stages import Dispatch, StageContext
from alerting.stages.inhibit import DOOR_RECOVERY_S, INHIBITORS, RECOVERY_HOLD_S
from alerting.warmup import WARMUP_S, Warmup
from alerting.weights import Weight
from core.chain import Contact, Policy, Store
from core.clock import Clock
from core.db import DatabaseError
from core.errors import InfluxError, NotFound
from core.influx import TimeSeriesStore
from core.lineprotocol import serialize
from core.metrics import Counter
from core.metrics import Registry as MetricsRegistry
from core.registry import Registry
from core.types import Point

log = logging.getLogger(__name__)

# An acknowledged alert whose problem is still there re-escalates after this long (the
# default of COLDCHAIN_ACK_TIMEOUT): someone said "on it" but nothing changed.
ACK_TIMEOUT_S = 2 * 3600
# Kinds whose upgrade at the same stage restates what the alert is about (the stores a
# pipeline stall grew to explain, the sensors overdue for calibration).
RESTATED_KINDS = frozenset({PIPELINE_STALLED, CALIBRATION_DUE})
# Resolve notes of store-level alerts a pipeline stall explained. They were no power cuts:
# no pull-down hold follows them (alerting/stages/inhibit.py RECOVERY_HOLD_S).
STALL_BACK_NOTE = "back to normal (during a pipeline stall)"
STALL_REARMED_NOTE = "pipeline stall over: re-armed, pages after its normal grace"
STALL_NOTES = frozenset({STALL_BACK_NOTE, STALL_REARMED_NOTE})
# A standby whose rules heard no observation for this long takes over by replaying history
# instead of trusting them: the stream may have had a gap (a lost broker session, a frozen
# process). Shorter and a quiet fleet's takeover replays for nothing; longer and a gap of
# that long is carried into the live rules.
STANDBY_STALE_S = 300.0


class AlertingStats:
    """Alerting counters for /metrics."""

    def __init__(self, metrics: MetricsRegistry | None = None) -> None:
        m = metrics if metrics is not None else MetricsRegistry()
        self.transitions = m.add(
            Counter("coldchain_alert_transitions_total", "Rule transitions", ["action", "kind"])
        )
        self.opened = m.add(Counter("coldchain_alerts_opened_total", "Alerts opened", ["kind"]))
        self.steps = m.add(Counter("coldchain_escalation_steps_total", "Escalation steps run"))
        self.held = m.add(
            Counter("coldchain_alert_stage_dropped_total", "Held or merged by a stage", ["stage"])
        )
        self.acks = m.add(Counter("coldchain_alert_acks_total", "Acknowledgements", ["via"]))
        self.notifications = m.add(
            Counter(
                "coldchain_notifications_total", "Notification outcomes", ["notifier", "result"]
            )
        )
        self.fallbacks = m.add(
            Counter("coldchain_notification_fallbacks_total", "Failed deliveries", ["action"])
        )
        self.event_errors = m.add(
            Counter("coldchain_alert_event_write_errors_total", "alert_event writes that failed")
        )
        self.health = AlertingHealth(m)  # lease, ticks, evaluation lag (alerting/health.py)


def _stage_level(stage: str) -> int:
    return LEVELS.get(stage, 2)


class AlertingEngine:
    """See the module docstring."""

    def __init__(
        self,
        registry: Registry,
        notifier: Notifier,
        clock: Clock,
        *,
        influx: TimeSeriesStore | None = None,
        public_url: str | None = None,
        ack_timeout_s: float = ACK_TIMEOUT_S,
        warmup_s: float = WARMUP_S,
        startup_grace_s: float = warmup.STARTUP_GRACE_S,
        rng: random.Random | None = None,
        metrics: MetricsRegistry | None = None,
        lease: Lease | None = None,
    ) -> None:
        self.registry = registry
        # Active/standby (alerting/lease.py): None means always active (one process).
        self.lease = lease
        self._leading = lease is None
        # While standing by: when the rules last heard the live stream (None: cold, the
        # takeover replays history instead).
        self._heard_at: float | None = None
        self.clock = clock
        self.influx = influx
        self.ack_timeout_s = ack_timeout_s
        self.warmup_s = warmup_s
        self.startup_grace_s = startup_grace_s
        self.warmed: Warmup | None = None
        self.book = AlertBook(registry, rng)
        self.pipeline = pipeline.build_pipeline()
        self.stats = AlertingStats(metrics)
        self._lock = threading.RLock()
        self._version = -1
        self._pending_events: list[str] = []
        # ``coldchain run`` sets this to the ingester's "MQTT connected" test; while it
        # answers False the watchdog counts the connection down (rules.INGEST_DOWN_GRACE_S).
        self.ingest_connected: Callable[[], bool] | None = None
        self._ingest_down_since: float | None = None
        self.rules = self._load(None)
        base = (public_url or "").rstrip("/")
        self.delivery = Delivery(
            self.book,
            notifier,
            clock,
            status_callback=f"{base}/api/v1/webhooks/twilio/status" if base else None,
            gather_url=f"{base}/api/v1/webhooks/twilio/voice" if base else None,
            on_failed=self._on_failed,
            sent=self.stats.notifications,
            may_send=lease.valid if lease is not None else None,
        )
        # What people do while this process stands by goes to the book and the queue the
        # active instance carries out (as an API without an engine does).
        self._standby_commands = commands.BookCommands(registry, clock, ack_timeout_s)
        if lease is not None:
            self.book.fence = lease.fence

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Warm the rules from stored history, open what happened while nothing ran,
        resume pending deliveries; the scheduler then starts calling :meth:`tick`. With a
        lease held by another process: stand by, warm (each tick tries to take it over)."""
        self.delivery.start()
        if self.lease is None or self.lease.try_acquire():
            self._lead()
        else:
            self._stand_by()

    @property
    def leading(self) -> bool:
        """This process evaluates, escalates and sends (no lease, or it holds it)."""
        return self._leading

    def _stand_by(self) -> None:
        """Another instance leads. Warm the rules from history all the same and keep them
        in step with the live stream (:meth:`observe` and :meth:`tick` run them and drop
        their transitions: the leader says what they say), so that a takeover needs no
        replay: the lease TTL plus a reconciliation with the book, not plus minutes of
        history (docs/performance.md, "Alerting failover"). History unreadable: stand by
        cold, and a takeover replays it then."""
        with self._lock:
            now = self.clock.time()
            warmed = self._replayed(now) if self.influx is not None else self.rules
            if warmed is not None:
                warmup.reconcile(warmed, self._booked(), round(now * 1000))  # adopt the book
                warmed.resume(now + self.startup_grace_s)
                self.rules = warmed
                self._heard_at = now
        log.info(
            "alerting stands by (%s): the lease is held by another instance",
            "warm" if self._heard_at is not None else "cold",
        )

    def _lead(self) -> None:
        """Become the active instance: rules in step with what happened (or stopped
        happening) while another instance or none was active, then the alert book's pending
        messages and escalations resumed. A warm standby that heard the stream lately
        carries its own rules over; otherwise they are rebuilt and warmed from history."""
        with self._lock:
            self._leading = True
            now = self.clock.time()
            heard = self._heard_at
            self._heard_at = None
            if heard is not None and now - heard <= STANDBY_STALE_S:
                self._take_over_warm(now)
            else:
                if self.lease is not None:  # a takeover: the registry may have moved on
                    self.rules = self._load(None)
                if self.influx is not None:
                    self._warm_up()
        self.delivery.resume_pending()

    def _step_down(self, why: str) -> None:
        if self._leading:
            log.error("alerting stands by: %s", why)
            self._heard_at = self.clock.time()  # its rules were live: a warm standby
        self._leading = False
        self.stats.health.lease(leader=False)

    def _booked(self) -> list[Condition]:
        return [_condition_of(a) for a in self.book.alerts(open_only=True, limit=100_000)]

    def _replayed(self, now: float) -> RuleEngine | None:
        """Fresh rules fed the last ``warmup_s`` of stored history (alerting/warmup.py);
        None when InfluxDB cannot be read (said in the log)."""
        assert self.influx is not None
        started = time.monotonic()  # a duration for /metrics, not an instant rules see
        rules = self._load(None, restore=False)
        try:
            self.warmed = warmup.warm(rules, self.influx, now, self.warmup_s)
        except InfluxError as exc:
            log.warning("alerting not warmed: history unreadable (%s)", exc)
            return None
        self.stats.health.warmed(time.monotonic() - started, self.warmed.events)
        log.info(
            "alerting warmed with %d stored observations of the last %.0f h",
            self.warmed.events, self.warmup_s / 3600,
        )  # fmt: skip
        return rules

    def _warm_up(self) -> None:
        """Replay recent history through fresh rules and reconcile them with the alert book
        (alerting/warmup.py). InfluxDB unreachable: start cold (as before) and say so."""
        now = self.clock.time()
        rules = self._replayed(now)
        if rules is None:
            return
        missing = warmup.reconcile(rules, self._booked(), round(now * 1000))
        rules.resume(now + self.startup_grace_s)
        self.rules = rules
        self._open_missing(missing, "while it was not running")

    def _take_over_warm(self, now: float) -> None:
        """A warm standby takes over: its rules saw every observation and tick; only the
        book is newer (what the old leader opened, escalated, or a person resolved)."""
        started = time.monotonic()
        if self.registry.entity_version() != self._version:
            self.rules = self._load(self.rules, restore=False)
        missing = warmup.reconcile(self.rules, self._booked(), round(now * 1000))
        self.stats.health.warmed(time.monotonic() - started, 0)
        self._open_missing(missing, "that the previous leader had not opened")

    def _open_missing(self, missing: list[Transition], when: str) -> None:
        log.info("alerting live; %d condition(s) arose %s", len(missing), when)
        if missing:
            self._apply(missing)
            self._run_due()

    def stop(self) -> None:
        """Finish what delivery has due, then stop (and hand the lease over at once)."""
        self.delivery.stop()
        if self.lease is not None and self._leading:
            self.lease.release()

    def _load(self, previous: RuleEngine | None, *, restore: bool = True) -> RuleEngine:
        """(Re)build configuration and rules from the registry and the open alerts,
        carrying ``previous``'s rule state (a registry change) or seeding what earlier
        runs learned (start-up)."""
        self._version = self.registry.entity_version()
        self.stores: dict[str, Store] = {s.id: s for s in self.registry.stores()}
        assets = self.registry.assets()
        self.asset_names = {a.id: a.name for a in assets}
        self.asset_policy = {a.id: a.policy for a in assets}
        self.contacts: list[Contact] = self.registry.contacts()
        self.policies: dict[str, Policy] = {p.id: p for p in self.registry.policies()}
        rules = RuleEngine(self.stores.values(), assets, self.registry.sensors())
        if previous is not None:  # a registry change: carry every piece of rule state
            rules.carry(previous)
        else:  # start-up: what earlier runs learned
            rules.seed_learned(
                self.book.defrost_episodes(since=self.clock.time() - LEARN_HISTORY_S)
            )
        for alert in self.book.alerts(open_only=True, limit=100_000) if restore else []:
            if alert.key not in rules.active:
                rules.restore(_condition_of(alert))
        return rules

    def reload_if_changed(self) -> bool:
        """Pick up registry changes (stores, assets, sensors, contacts, policies). True when
        reloaded. Rule state (budgets, timers, learned defrosts) carries over for
        everything that still exists (docs/design/state-continuity.md)."""
        if self.registry.entity_version() == self._version:
            return False
        with self._lock:
            self.rules = self._load(self.rules)
        return True

    # -- inputs -----------------------------------------------------------------------

    def observe(self, observations: Iterable[Any]) -> None:
        """Evaluate stored observations (``ingest.pipeline.Observation``) at once. A warm
        standby keeps its rules in step with them and drops what they decide (the leader
        decides); a cold one drops them (its takeover replays them from InfluxDB)."""
        if not self._leading:
            if self._heard_at is not None:
                with self._lock:
                    self._evaluate(observations)
                    self.rules.new_episodes = []  # the leader saves them
                    self._heard_at = self.clock.time()
            return
        with self._lock, self._fenced():
            transitions = self._evaluate(observations)
            if transitions:
                self._apply(transitions)
                self._run_due()
            if self.rules.new_episodes:
                self._save_episodes()

    def tick(self) -> None:
        """The lease first (renewed, taken over, or lost); then, when active, commands
        queued by an API in another process, time-based rules, due escalation steps, and
        retries of alert_event writes."""
        renewed = self.lease is None  # no lease: a lone engine leads, each tick a heartbeat
        if self.lease is not None:
            try:
                held = renewed = self.lease.try_acquire()
            except DatabaseError as exc:  # the registry is unreachable: so is the lease
                log.warning("lease not renewed: %s", exc)
                held = self.lease.valid()
            if held and not self._leading:
                self._lead()
            elif not held:
                self._step_down("the lease is held by another instance")
        health = self.stats.health
        health.lease(leader=self._leading, heartbeat_at=self.clock.time() if renewed else None)
        if not self._leading:
            if self._heard_at is not None:  # warm: in step with registry and time
                self.reload_if_changed()
                with self._lock:
                    self._tick_rules()
            health.ticked(self.clock.time())  # a standby ticks too (the watchdog asks)
            return
        self.reload_if_changed()
        self.run_commands()
        with self._lock, self._fenced():
            self._apply(self._tick_rules())
            self._run_due()
            self._flush_events()
        health.ticked(self.clock.time())

    def _evaluate(self, observations: Iterable[Any]) -> list[Transition]:
        transitions: list[Transition] = []
        for o in observations:
            transitions += self.rules.observe(
                o.kind, o.ts_ms, sensor=o.sensor, device=o.device, quantity=o.quantity,
                value=o.value, code=o.code,
            )  # fmt: skip
        return transitions

    def _tick_rules(self) -> list[Transition]:
        """The rules' time-based step at the clock's now (with the ingester's connection,
        in ``coldchain run``)."""
        now = self.clock.time()
        probe = self.ingest_connected
        if probe is None or probe():
            self._ingest_down_since = None
        elif self._ingest_down_since is None:
            self._ingest_down_since = now
        down = self._ingest_down_since
        return self.rules.tick(
            round(now * 1000),
            ingest_down_since_ms=round(down * 1000) if down is not None else None,
        )

    @contextmanager
    def _fenced(self) -> Iterator[None]:
        """Run leader work; a write refused for a lost lease makes this process stand by
        (what it had decided is the new leader's to decide again)."""
        try:
            yield
        except LeaseLost as exc:
            self._step_down(str(exc))

    def _save_episodes(self) -> None:
        """Persist newly learned defrost episodes (a few per asset and day)."""
        episodes, self.rules.new_episodes = self.rules.new_episodes, []
        try:
            self.book.record_defrost_episodes(
                episodes, forget_before=self.clock.time() - LEARN_HISTORY_S
            )
        except DatabaseError:  # learning survives in memory; the next restart relearns
            log.exception("could not save %d learned defrost episodes", len(episodes))

    # -- transitions -> alerts --------------------------------------------------------

    def _apply(self, transitions: list[Transition]) -> None:
        now = self.clock.time()
        for t in transitions:
            condition = t.condition
            self.stats.transitions.inc(t.action, condition.kind)
            existing = self.book.open_by_key(condition.key)
            if t.action == "clear":
                if existing is not None:
                    rearmed = bool(condition.explanation.get("rearmed"))
                    note = "back to normal"
                    if rearmed:
                        note = STALL_REARMED_NOTE
                    elif condition.explanation.get("during_stall"):
                        note = STALL_BACK_NOTE
                    alert = self.book.resolve(existing, now, by="coldchain", note=note)
                    self._event(alert, "resolved")
                    if rearmed:
                        continue  # still silent, so not "back": it pages after its grace
                    current = condition.explanation.get("now")
                    self._notify_resolved(
                        alert, now, current if isinstance(current, int | float) else None
                    )
                continue
            if existing is None:
                alert = self.book.open(
                    condition,
                    now,
                    escalation.policy_for(condition, self.stores, self.asset_policy, self.policies),
                )
                self.stats.opened.inc(condition.kind)
                self._event(alert, "firing")
            elif _stage_level(condition.stage) > _stage_level(existing.stage) or (
                t.action == "upgrade" and condition.kind in RESTATED_KINDS
            ):
                self._event(self.book.upgrade(existing, condition, now), existing.state)

    # -- escalation ---------------------------------------------------------------------

    def _run_due(self) -> None:
        """One escalation round (alerting/pipeline.py): plan every due step, filter the
        dispatches through the stages, write what survives in one transaction, send."""
        now = self.clock.time()
        due = self.book.due(now)
        if not due:
            return
        ctx = self._stage_context(now)
        steps = [
            escalation.plan(alert, now, self._place(alert.store), self._weight(alert, now),
                            self.contacts)
            for alert in due
        ]  # fmt: skip
        kept = pipeline.run(self.pipeline, [d for s in steps for d in s.dispatches], ctx)
        for stage, count in ctx.dropped.items():
            self.stats.held.inc(stage, amount=count)
        written = pipeline.steps_to_write(steps, kept)
        by_alert = {s.alert.id: s for s in written}
        outgoing = [
            Outgoing(
                tuple(a.id for a in d.alerts),
                self._page(d),
                d.alerts[0].step,
                by_alert[d.alerts[0].id].purpose,
            )
            for d in kept
            if d.contact is not None
        ]
        records = [StepRecord(s.alert, s.step, s.repeats, s.next_at, s.detail) for s in written]
        ids = self.book.commit_round(now, records, outgoing)
        for s in written:
            if not s.park:
                if not s.detail["recipients"]:
                    log.warning("alert %s step %d: nobody to notify for %s", s.alert.id,
                                s.detail["step"], s.detail["notify"])  # fmt: skip
                self.stats.steps.inc()
                level = s.alert.level
                self._event(self.book.get(s.alert.id), "escalated" if level > 0 else "firing")
        for nid in ids:
            if nid is not None:
                self.delivery.submit(nid)

    def _stage_context(self, now: float) -> StageContext:
        """What the stages read, through indexes: a round costs the same after a year of
        history and with hundreds of unrelated alerts open."""
        recent = self.book.alerts(
            kind=STORE_OUTAGE, resolved_since=now - RECOVERY_HOLD_S, limit=100_000
        )
        doors = self.book.alerts(
            kind=DOOR_OPEN, resolved_since=now - DOOR_RECOVERY_S, limit=100_000
        )
        return StageContext(
            now=now,
            open_alerts=self.book.alerts(open_only=True, kinds=INHIBITORS, limit=100_000),
            silences=self.book.active_silences(now),
            recovering={
                a.store: a.resolved_at
                for a in recent
                if a.resolved_at is not None
                and now - a.resolved_at < RECOVERY_HOLD_S
                and a.resolve_note not in STALL_NOTES  # the store had power all along
            },
            doors_closed={
                a.asset: a.resolved_at
                for a in doors
                if a.asset and a.resolved_at is not None and now - a.resolved_at < DOOR_RECOVERY_S
            },
        )

    def _weight(self, alert: Alert, now: float) -> Weight | None:
        """The store's weight now, which shortens waits (none for calibration: a date
        passed at night is no more urgent than by day)."""
        calendar = self.rules.calendars.get(alert.store)
        if calendar is None or alert.kind == CALIBRATION_DUE:
            return None
        return calendar.at(now)

    def _page(self, dispatch: Dispatch) -> Page:
        """The message of one dispatch: one alert, or a bundle of a store's alerts."""
        place = self._place(dispatch.store)
        assert place is not None  # dispatches are only planned for places that exist
        alerts = dispatch.alerts
        body = messages.page(
            place.name,
            [self._text(a) for a in alerts],
            dispatch.language,
            place.timezone,
            max(a.level for a in alerts),
            acked=len(alerts) == 1 and alerts[0].state == ACKNOWLEDGED,
        )
        assert dispatch.contact is not None
        return Page(dispatch.contact, dispatch.phone, dispatch.channel, dispatch.language,
                    body, place.id)  # fmt: skip

    def _place(self, store_id: str) -> Place | None:
        """The store an alert is in, or for chain-wide alerts the chain: named "central",
        in the most common store language and timezone (ties: alphabetical)."""
        store = self.stores.get(store_id)
        if store is not None:
            return Place(store.id, store.name, store.language, store.timezone)
        if store_id != CHAIN_STORE:
            return None
        stores = list(self.stores.values())

        def most_common(values: list[str], default: str) -> str:
            tally = Tally(sorted(values))
            return max(tally, key=lambda v: tally[v]) if tally else default

        lang = messages.language(most_common([s.language for s in stores], "es"))
        zone = most_common([s.timezone for s in stores], "UTC")
        return Place(CHAIN_STORE, messages.chain_name(lang), lang, zone)

    def _text(self, alert: Alert) -> messages.AlertText:
        return messages.AlertText(
            code=alert.ack_code,
            kind=alert.kind,
            stage=alert.stage,
            severity=alert.severity,
            asset_name=self.asset_names.get(alert.asset or "", alert.asset or ""),
            sensor=alert.sensor,
            device=alert.device,
            value=alert.value,
            limit=alert.limit_value,
            since=alert.since,
            explanation=alert.explanation,
        )

    def _notify_resolved(self, alert: Alert, now: float, current: float | None = None) -> None:
        store = self._place(alert.store)
        if store is None:
            return
        paged: dict[tuple[str, str], Notification] = {}
        for note in self.book.notifications(alert_id=alert.id):
            if note.purpose in ("page", "escalation", "reminder") and note.status in (
                "sent", "delivered", "pending", "bundled",
            ):  # fmt: skip
                paged.setdefault((note.phone, note.channel), note)
        pages = [
            Page(
                n.contact,
                n.phone,
                "sms" if n.channel == "voice" else n.channel,
                n.language,
                messages.resolved(
                    store.name, self._text(alert), n.language, store.timezone, now, current
                ),
                store.id,
            )
            for n in paged.values()
        ]
        for nid in self.book.add_notifications([alert.id], now, "resolved", pages):
            self.delivery.submit(nid)

    # -- failures, acknowledgements, callbacks ------------------------------------------

    def _on_failed(self, note: Notification, error: str) -> None:
        """Delivery gave up: page another contact of the same role, or escalate now."""
        with self._lock:
            now = self.clock.time()
            if note.purpose == "resolved":
                return
            alerts = [self.book.get(a) for a in note.alert_ids]
            failed = next((c for c in self.contacts if c.id == note.contact), None)
            already = {n.contact for a in alerts for n in self.book.notifications(alert_id=a.id)}
            roles = set(failed.roles) if failed else set()
            backup = next(
                (c for c in self.contacts
                 if c.id not in already and roles & set(c.roles)
                 and (not c.stores or note.store in c.stores or note.store == CHAIN_STORE)),
                None,
            )  # fmt: skip
            if backup is not None:
                page = Page(backup.id, backup.phone, backup.channel,
                            messages.language(backup.language or note.language), note.body,
                            note.store)  # fmt: skip
                self.delivery.submit(self.book.fallback(note, now, page))
                self.stats.fallbacks.inc("next_contact")
                return
            for alert in alerts:
                if alert.state == FIRING and (alert.next_at or 0) > now:
                    # Nobody else in that role: do not wait out the step; escalate now.
                    self.book.expedite(alert, now, reason=f"delivery failed: {error[:120]}")
                    self.stats.fallbacks.inc("escalate_now")
            self._run_due()

    def acknowledge(self, alert: Alert, *, by: str, via: str, note: str = "") -> Alert:
        """Stop the escalation of ``alert`` (re-escalates after the ack timeout)."""
        if not self._leading:
            return self._standby_commands.acknowledge(alert, by=by, via=via, note=note)
        with self._lock:
            now = self.clock.time()
            acked = self.book.acknowledge(
                alert, now, by=by, via=via, note=note, rearm_at=now + self.ack_timeout_s
            )
            self.stats.acks.inc(via)
            self._event(acked, "acknowledged")
            return acked

    def resolve(self, alert: Alert, *, by: str, note: str) -> Alert:
        """Resolve by hand; if the problem is still there, the rules open a new alert."""
        if not self._leading:
            return self._standby_commands.resolve(alert, by=by, note=note)
        with self._lock:
            now = self.clock.time()
            resolved = self.book.resolve(alert, now, by=by, note=note)
            self.rules.forget(alert.key)
            self._event(resolved, "resolved")
            self._notify_resolved(resolved, now)
            return resolved

    def run_commands(self) -> int:
        """Carry out what an API without the engine queued (alerting/commands.py): an
        acknowledgement's event, a resolution's messages, a failed delivery's fallback.
        Each is marked done after it ran (a crash in between runs it again: a resolved
        message may go twice, a fallback does not, as the notification is marked failed).
        Returns how many ran."""
        pending = self.book.pending_commands()
        for command_id, alert_id, payload in pending:
            with self._lock:
                now = self.clock.time()
                kind = payload.get("kind")
                try:
                    if kind == commands.STATUS:
                        self.handle_status(
                            str(payload.get("provider_id", "")), str(payload.get("status", "")),
                            payload.get("error"),
                        )  # fmt: skip
                    elif alert_id is not None and kind == commands.ACKNOWLEDGED:
                        self.stats.acks.inc(str(payload.get("via", "api")))
                        self._event(self.book.get(alert_id), "acknowledged")
                    elif alert_id is not None and kind == commands.RESOLVED:
                        resolved = self.book.get(alert_id)
                        self.rules.forget(resolved.key)
                        self._event(resolved, "resolved")
                        self._notify_resolved(resolved, now)
                except NotFound:
                    log.warning("command %d names an unknown alert %s", command_id, alert_id)
                self.book.command_done(command_id, now)
        return len(pending)

    def help_reply(self, sender: str) -> AckReply:
        """How to acknowledge, in the sender's language."""
        return acks.help_reply(sender, self.contacts)

    def handle_sms(self, from_number: str, body: str) -> AckReply:
        """An inbound SMS: ``OK 4821 [note]`` from a paged or responsible number acks."""
        parsed = acks.parse_sms(body)
        if parsed is None:
            return self.help_reply(from_number)
        code, note = parsed
        return self.acknowledge_by_code(from_number, code, via="sms", note=note)

    def acknowledge_by_code(self, sender: str, code: str, *, via: str, note: str = "") -> AckReply:
        """Acknowledge by short code for ``sender`` (SMS reply, voice keypad)."""
        return acks.acknowledge_by_code(
            self.book, self.contacts, self.stores, sender, code, via=via, note=note,
            acknowledge=lambda alert, by, how, text: self.acknowledge(
                alert, by=by, via=how, note=text
            ),
        )  # fmt: skip

    def handle_status(self, provider_id: str, status: str, error_code: str | None) -> bool:
        """A delivery status callback; failed/undelivered fall back like a send error."""
        if not self._leading:
            return self._standby_commands.handle_status(provider_id, status, error_code)
        note = self.book.notification_by_provider(provider_id)
        if note is None:
            return False
        order = ["pending", "sent", "delivered"]
        if status in ("failed", "undelivered"):
            if note.status not in ("failed", "undelivered"):
                self.book.fail(note, self.clock.time(), status=status, attempt=False,
                               error=f"provider status {status} ({error_code})")  # fmt: skip
                self._on_failed(note, f"{status} {error_code or ''}".strip())
            return True
        if (
            status in order
            and note.status in order
            and order.index(status) > order.index(note.status)
        ):
            self.book.mark(note.id, self.clock.time(), status=status)
        return True

    def alert_by_id(self, alert_id: str) -> Alert:
        """One alert (NotFound if unknown)."""
        return self.book.get(alert_id)

    # -- alert_event points -------------------------------------------------------------

    def _event(self, alert: Alert, state: str) -> None:
        if self.influx is None:
            return
        tags = {"store": alert.store, "kind": alert.kind, "severity": alert.severity}
        if alert.asset:
            tags["asset"] = alert.asset
        point = Point(
            "alert_event",
            tuple(sorted(tags.items())),
            (("alert_id", alert.id), ("state", state), ("level", alert.level)),
            round(self.clock.time() * 1000),
        )
        line = serialize(point)
        if line is not None:
            self._pending_events.append(line)
        self._flush_events()

    def _flush_events(self) -> None:
        if not self._pending_events or self.influx is None:
            return
        body = "\n".join(self._pending_events).encode()
        try:
            self.influx.write(body)
        except InfluxError as exc:
            self.stats.event_errors.inc()
            log.warning("alert_event write failed (%s); will retry", exc)
            del self._pending_events[:-10_000]  # bounded: never hold more than 10k events
            return
        self._pending_events.clear()


def _condition_of(alert: Alert) -> Condition:
    return Condition(
        key=alert.key,
        kind=alert.kind,
        severity=alert.severity,
        stage=alert.stage,
        store=alert.store,
        asset=alert.asset,
        sensor=alert.sensor,
        device=alert.device,
        since_ms=round(alert.since * 1000),
        value=alert.value,
        limit=alert.limit_value,
        explanation=alert.explanation,
    )
