"""The registry: stores, assets, sensors, contacts, escalation policies, discovered devices.

Every write is one registry transaction that also appends an audit entry naming the API
key (``actor``). ``PUT /<kind>/{id}`` creates or replaces (201 or 200) with the same
document the chain file holds. Deletes are refused (409) while something depends on the
entity: a store with assets, an asset with sensors (retired ones included: their history
stays attributable), a policy named by a store or an asset. Sensors are never deleted;
they are retired (``POST /sensors/{id}/retire``) so their history keeps its meaning.

Moving a sensor is a ``PUT`` with another asset. Nothing is rewritten in InfluxDB: points
keep the store/asset tags they were written with, so the old asset's history keeps the
readings taken there and the new asset's history starts at the move (``GET /readings``
returns the asset of each point).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.responses import JSONResponse

from alerting.profiles import limits_for
from api.auth import ADMIN, Admin, Anyone, ChainWideReader, Principal, RegistryWriter
from api.context import Ctx
from api.errors import Unprocessable, problem, require_finite, responses
from api.schemas import (
    ID_PATTERN,
    SENSOR_ID_PATTERN,
    AssetOut,
    CalibrationDueOut,
    DiscoveredOut,
    RegisterSensor,
    SensorConflictOut,
    SensorOut,
    utc_required,
)
from core.chain import Asset, Contact, Policy, Sensor, Store
from core.errors import NotFound
from devices import family as device_family

router = APIRouter(tags=["registry"])

StoreId = Annotated[str, Path(pattern=ID_PATTERN, description="Store id")]
AssetId = Annotated[str, Path(pattern=ID_PATTERN, description="Asset id")]
SensorIdPath = Annotated[str, Path(pattern=SENSOR_ID_PATTERN, description="Sensor id")]
ContactId = Annotated[str, Path(pattern=ID_PATTERN, description="Contact id")]
PolicyId = Annotated[str, Path(pattern=ID_PATTERN, description="Policy id")]
StoreFilter = Annotated[str | None, Query(pattern=ID_PATTERN, description="Only this store")]
AssetFilter = Annotated[str | None, Query(pattern=ID_PATTERN, description="Only this asset")]

# Used when a discovered device's family is unknown to this build (a plugin removed):
# the Sensor model's own default, five minutes.
DEFAULT_INTERVAL_S = 300.0

READ = responses(401, 403, 404)
WRITE = responses(401, 403)
DELETE = responses(401, 403, 404, 409)


def _same_id(path_id: str, body: Store | Asset | Sensor | Contact | Policy) -> None:
    require_finite(body)
    body_id = body.id
    if path_id != body_id:
        raise Unprocessable(["body", "id"], f"{body_id!r} differs from the id in the path")


def _created(response: Response, created: bool) -> None:
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK


def _missing_reference(field: str, exc: NotFound) -> Unprocessable:
    return Unprocessable(["body", field], str(exc))


# -- stores -----------------------------------------------------------------------------


@router.get("/stores", response_model=list[Store], responses=WRITE)
def list_stores(ctx: Ctx, who: Anyone) -> list[Store]:
    """Stores (a manager's key sees its own)."""
    return [s for s in ctx.deps.registry.stores() if who.can_see(s.id)]


@router.get("/stores/{store_id}", response_model=Store, responses=READ)
def get_store(ctx: Ctx, who: Anyone, store_id: StoreId) -> Store:
    """One store."""
    who.check_store(store_id)
    return ctx.deps.registry.store(store_id)


@router.put(
    "/stores/{store_id}",
    response_model=Store,
    responses={**WRITE, 201: {"model": Store, "description": "Created"}},
)
def put_store(
    ctx: Ctx, who: RegistryWriter, store_id: StoreId, body: Store, response: Response
) -> Store:
    """Create or replace a store."""
    _same_id(store_id, body)
    created = ctx.deps.registry.upsert_store(body, actor=who.actor, at=ctx.deps.clock.time())
    _created(response, created)
    return body


@router.delete("/stores/{store_id}", status_code=204, responses=DELETE)
def delete_store(ctx: Ctx, who: RegistryWriter, store_id: StoreId) -> Response:
    """Delete a store that has no assets (409 otherwise)."""
    ctx.deps.registry.delete_store(store_id, actor=who.actor, at=ctx.deps.clock.time())
    return Response(status_code=204)


# -- assets -----------------------------------------------------------------------------


@router.get("/assets", response_model=list[Asset], responses=responses(401, 403))
def list_assets(ctx: Ctx, who: Anyone, store: StoreFilter = None) -> list[Asset]:
    """Assets, optionally of one store."""
    if store is not None:
        who.check_store(store)
    return [a for a in ctx.deps.registry.assets(store) if who.can_see(a.store)]


@router.get("/assets/{asset_id}", response_model=AssetOut, responses=READ)
def get_asset(ctx: Ctx, who: Anyone, asset_id: AssetId) -> AssetOut:
    """One asset, with its effective alarm limits and its active sensors."""
    registry = ctx.deps.registry
    asset = registry.asset(asset_id)
    who.check_store(asset.store)
    return AssetOut(
        asset=asset,
        limits=limits_for(asset, registry.store(asset.store)),
        sensors=[s.id for s in registry.sensors(asset_id)],
    )


@router.put(
    "/assets/{asset_id}",
    response_model=Asset,
    responses={**WRITE, 201: {"model": Asset, "description": "Created"}},
)
def put_asset(
    ctx: Ctx, who: RegistryWriter, asset_id: AssetId, body: Asset, response: Response
) -> Asset:
    """Create or replace an asset (its store must exist)."""
    _same_id(asset_id, body)
    try:
        created = ctx.deps.registry.upsert_asset(body, actor=who.actor, at=ctx.deps.clock.time())
    except NotFound as exc:
        raise _missing_reference("store", exc) from None
    _created(response, created)
    return body


@router.delete("/assets/{asset_id}", status_code=204, responses=DELETE)
def delete_asset(ctx: Ctx, who: RegistryWriter, asset_id: AssetId) -> Response:
    """Delete an asset that never had sensors (409 otherwise)."""
    ctx.deps.registry.delete_asset(asset_id, actor=who.actor, at=ctx.deps.clock.time())
    return Response(status_code=204)


# -- sensors ----------------------------------------------------------------------------


def _sensor_out(ctx: Ctx, sensor: Sensor, retired_at: float | None) -> SensorOut:
    registry = ctx.deps.registry
    asset = registry.asset(sensor.asset)
    store = registry.store(asset.store)
    return SensorOut(
        sensor=sensor,
        store=store.id,
        asset_type=asset.type,
        retired_at=None if retired_at is None else utc_required(retired_at),
        limits=limits_for(asset, store),
    )


@router.get("/sensors", response_model=list[SensorOut], responses=responses(401, 403))
def list_sensors(
    ctx: Ctx,
    who: Anyone,
    store: StoreFilter = None,
    asset: AssetFilter = None,
    include_retired: bool = False,
) -> list[SensorOut]:
    """Sensors with their store and effective limits, optionally of one store or asset."""
    registry = ctx.deps.registry
    if store is not None:
        who.check_store(store)
    assets = {a.id: a for a in registry.assets(store)}
    if asset is not None:
        found = assets.get(asset)
        if found is None:
            return []
        who.check_store(found.store)
        assets = {asset: found}
    assets = {k: a for k, a in assets.items() if who.can_see(a.store)}
    stores = {s.id: s for s in registry.stores()}
    out = []
    for sensor, retired_at in registry.sensors_with_state(
        assets=assets if (store or asset or who.scoped) else None,
        include_retired=include_retired,
    ):
        a = assets[sensor.asset]
        out.append(
            SensorOut(
                sensor=sensor,
                store=a.store,
                asset_type=a.type,
                retired_at=None if retired_at is None else utc_required(retired_at),
                limits=limits_for(a, stores[a.store]),
            )
        )
    return out


# Discovered devices per answer by default, and at most. A technician looks at the newest
# few; the registry keeps at most DISCOVERED_KEEP (10k) and a full listing of those was
# 138 MB at 100k: pages keep an answer to a few MB.
DISCOVERED_PAGE = 500
DISCOVERED_PAGE_MAX = 5_000

# How far ahead GET /sensors/calibration-due looks by default, and at most. A month is
# the planning horizon of a technician's route; a year lists the whole fleet.
CALIBRATION_DAYS = 30
CALIBRATION_DAYS_MAX = 366


@router.get(
    "/sensors/calibration-due",
    response_model=list[CalibrationDueOut],
    responses=responses(401, 403),
)
def calibration_due(
    ctx: Ctx,
    who: Anyone,
    store: StoreFilter = None,
    days: Annotated[int, Query(ge=0, le=CALIBRATION_DAYS_MAX)] = CALIBRATION_DAYS,
) -> list[CalibrationDueOut]:
    """Sensors whose calibration is overdue or due within ``days`` (default 30), soonest
    first; an overdue one is also an alert to the store's technicians, weekly."""
    registry = ctx.deps.registry
    if store is not None:
        who.check_store(store)
    stores = {s.id: s for s in registry.stores() if who.can_see(s.id)}
    assets = {a.id: a for a in registry.assets(store) if a.store in stores}
    now = ctx.deps.clock.time()
    out = []
    for sensor, _ in registry.sensors_with_state(assets=assets):
        due = sensor.calibration_due
        if due is None:
            continue
        asset = assets[sensor.asset]
        today = datetime.fromtimestamp(now, ZoneInfo(stores[asset.store].timezone)).date()
        left = (due - today).days
        if left <= days:
            out.append(
                CalibrationDueOut(
                    sensor=sensor.id, store=asset.store, asset=asset.id, asset_name=asset.name,
                    calibrated_at=sensor.calibrated_at, calibration_due=due, days_left=left,
                    overdue=left < 0,
                )
            )  # fmt: skip
    return sorted(out, key=lambda c: (c.calibration_due, c.sensor))


def _visible_sensor(ctx: Ctx, who: Principal, sensor_id: str) -> tuple[Sensor, float | None]:
    sensor, retired_at = ctx.deps.registry.sensor(sensor_id)
    if who.scoped:
        who.check_store(ctx.deps.registry.asset(sensor.asset).store)
    return sensor, retired_at


@router.get("/sensors/{sensor_id}", response_model=SensorOut, responses=READ)
def get_sensor(ctx: Ctx, who: Anyone, sensor_id: SensorIdPath) -> SensorOut:
    """One sensor (retired ones too), with the limits its alarms use."""
    return _sensor_out(ctx, *_visible_sensor(ctx, who, sensor_id))


AMBIGUOUS: dict[int | str, dict[str, object]] = {
    409: {
        "model": SensorConflictOut,
        "description": "Conflicts with the current state; for a bare device id over several "
        "probes, `channels` lists them: register one",
    }
}


def _ambiguous(ctx: Ctx, sensor_id: str) -> JSONResponse | None:
    """The refusal of a bare device id whose device carries several probes, or None.

    A technician registering ``tasmota-s042-wic1`` for a node with two DS18B20 cannot mean
    both; the answer lists the ids seen so that one can be picked (docs/design/sensor-ids.md).
    An id already registered (a move, a recalibration) is never refused.
    """
    registry = ctx.deps.registry
    channels = registry.ambiguous_channels(sensor_id)
    if not channels:
        return None
    try:
        registry.sensor(sensor_id)
    except NotFound:
        pass
    else:
        return None
    listed = ", ".join(channels)
    detail = (
        f"{sensor_id} carries {len(channels)} probes ({listed}): register the one on this "
        "asset by its own id"
    )
    return JSONResponse(status_code=409, content={"detail": detail, "channels": channels})


@router.put(
    "/sensors/{sensor_id}",
    response_model=SensorOut,
    responses={**WRITE, **AMBIGUOUS, 201: {"model": SensorOut, "description": "Created"}},
)
def put_sensor(
    ctx: Ctx, who: RegistryWriter, sensor_id: SensorIdPath, body: Sensor, response: Response
) -> SensorOut | JSONResponse:
    """Register, re-calibrate, move (another asset) or reinstate (if retired) a sensor.

    Moving keeps history: InfluxDB points keep the tags they were written with. A bare
    device id whose device was seen with several probes is refused (409) with the probes'
    ids: register one of them. Readings from the next message on are stored under the asset.
    """
    _same_id(sensor_id, body)
    if (refusal := _ambiguous(ctx, sensor_id)) is not None:
        return refusal
    try:
        change = ctx.deps.registry.add_sensor(body, actor=who.actor, at=ctx.deps.clock.time())
    except NotFound as exc:
        raise _missing_reference("asset", exc) from None
    _created(response, change == "created")
    return _sensor_out(ctx, body, None)


@router.post(
    "/sensors/register",
    response_model=SensorOut,
    status_code=201,
    responses={**responses(401, 403), **AMBIGUOUS},
)
def register_discovered(
    ctx: Ctx, who: RegistryWriter, body: RegisterSensor
) -> SensorOut | JSONResponse:
    """Register a discovered device's sensor on an asset: one call for a technician.

    The family comes from the discovery record and the reporting interval from the family's
    profile unless given; alarm limits follow from the asset (shown in the answer). Readings
    from the next message on are stored under the asset.
    """
    require_finite(body)
    registry = ctx.deps.registry
    if (refusal := _ambiguous(ctx, body.sensor)) is not None:
        return refusal
    # The id of a sensor seen unregistered, or a bare device id (its one probe).
    device = next(
        (d for d in registry.discovered() if body.sensor in (*d.sensors, d.device_id)),
        None,
    )
    if device is None:
        if any(s.id == body.sensor for s in registry.sensors()):
            raise problem(409, f"sensor {body.sensor!r} is already registered")
        raise Unprocessable(
            ["body", "sensor"],
            f"{body.sensor!r} is not among the discovered devices' sensors "
            "(GET /api/v1/devices/discovered); register a sensor not yet seen with PUT",
        )
    try:
        interval = body.interval or device_family(device.family).profile.interval_s
    except KeyError:
        interval = DEFAULT_INTERVAL_S
    sensor = Sensor(
        id=body.sensor,
        asset=body.asset,
        family=device.family,
        offset=body.offset,
        interval=interval,
        calibrated_at=body.calibrated_at,
        calibration_due=body.calibration_due,
    )
    try:
        registry.add_sensor(sensor, actor=who.actor, at=ctx.deps.clock.time())
    except NotFound as exc:
        raise _missing_reference("asset", exc) from None
    return _sensor_out(ctx, sensor, None)


@router.post(
    "/sensors/{sensor_id}/retire", response_model=SensorOut, responses=responses(401, 403, 404, 409)
)
def retire_sensor(ctx: Ctx, who: RegistryWriter, sensor_id: SensorIdPath) -> SensorOut:
    """Retire a sensor: its readings are no longer attributed or alarmed; history stays."""
    registry = ctx.deps.registry
    sensor, retired_at = registry.sensor(sensor_id)
    if retired_at is not None:
        raise problem(409, f"sensor {sensor_id!r} is already retired")
    now = ctx.deps.clock.time()
    registry.retire_sensor(sensor_id, now, actor=who.actor)
    return _sensor_out(ctx, sensor, now)


@router.get("/devices/discovered", response_model=list[DiscoveredOut], responses=WRITE)
def discovered(
    ctx: Ctx,
    _who: ChainWideReader,
    include_registered: bool = False,
    limit: Annotated[int, Query(ge=1, le=DISCOVERED_PAGE_MAX)] = DISCOVERED_PAGE,
) -> list[DiscoveredOut]:
    """Devices to look at, most recent first (at most ``limit``): sensors not registered
    yet (the exact ids to register), devices whose every message was ignored (with the
    reasons), registrations that get none of the readings (``note``).
    ``include_registered`` lists every device seen, with what it sent that is not stored."""
    return [
        DiscoveredOut(
            device_id=d.device_id,
            family=d.family,
            first_seen=utc_required(d.first_seen),
            last_seen=utc_required(d.last_seen),
            messages=d.messages,
            sensors=d.sensors,
            last_topic=d.last_topic,
            last_payload=d.last_payload,
            quantities=d.quantities,
            ignored=d.ignored,
            last_ignored=d.last_ignored,
            unused=d.unused,
            note=d.note,
        )
        for d in ctx.deps.registry.discovered(include_registered=include_registered, limit=limit)
    ]


# -- contacts ---------------------------------------------------------------------------


# The contacts a technician key may create, change or delete: people of given stores, with
# these roles. Chain-wide desks (no stores) and escalation roles (oncall, regional, any
# other) are an admin's to give: a technician who could make itself an on-call contact
# could acknowledge by SMS what the API refuses it (issue 13).
TECHNICIAN_CONTACT_ROLES = frozenset({"store_manager", "technician"})


def _check_contact_write(who: Principal, contact: Contact | None) -> None:
    """403 unless ``who`` may write ``contact`` (as it is, or as it would become)."""
    if who.role == ADMIN or contact is None:
        return
    if not contact.stores or set(contact.roles) - TECHNICIAN_CONTACT_ROLES:
        raise problem(
            403,
            "only an admin key may write chain-wide contacts or contacts with roles other "
            f"than {', '.join(sorted(TECHNICIAN_CONTACT_ROLES))}",
        )


def _existing_contact(ctx: Ctx, contact_id: str) -> Contact | None:
    try:
        return ctx.deps.registry.contact(contact_id)
    except NotFound:
        return None


@router.get("/contacts", response_model=list[Contact], responses=WRITE)
def list_contacts(ctx: Ctx, who: Anyone) -> list[Contact]:
    """Contacts (a manager's key sees those of its stores)."""
    return [c for c in ctx.deps.registry.contacts() if who.can_see_contact(c.stores)]


@router.get("/contacts/{contact_id}", response_model=Contact, responses=READ)
def get_contact(ctx: Ctx, who: Anyone, contact_id: ContactId) -> Contact:
    """One contact."""
    contact = ctx.deps.registry.contact(contact_id)
    if not who.can_see_contact(contact.stores):
        raise problem(403, "this key is not allowed to see this contact")
    return contact


@router.put(
    "/contacts/{contact_id}",
    response_model=Contact,
    responses={**WRITE, 201: {"model": Contact, "description": "Created"}},
)
def put_contact(
    ctx: Ctx, who: RegistryWriter, contact_id: ContactId, body: Contact, response: Response
) -> Contact:
    """Create or replace a contact. A technician key writes store contacts with the roles
    ``store_manager`` or ``technician`` only (chain-wide desks and escalation roles are an
    admin's)."""
    _same_id(contact_id, body)
    _check_contact_write(who, _existing_contact(ctx, contact_id))
    _check_contact_write(who, body)
    created = ctx.deps.registry.upsert_contact(body, actor=who.actor, at=ctx.deps.clock.time())
    _created(response, created)
    return body


@router.delete("/contacts/{contact_id}", status_code=204, responses=responses(401, 403, 404))
def delete_contact(ctx: Ctx, who: RegistryWriter, contact_id: ContactId) -> Response:
    """Delete a contact (open alerts' notification logs keep what was sent to it)."""
    _check_contact_write(who, _existing_contact(ctx, contact_id))
    ctx.deps.registry.delete_contact(contact_id, actor=who.actor, at=ctx.deps.clock.time())
    return Response(status_code=204)


# -- escalation policies ----------------------------------------------------------------


@router.get("/escalation-policies", response_model=list[Policy], responses=WRITE)
def list_policies(ctx: Ctx, _who: Anyone) -> list[Policy]:
    """Escalation policies."""
    return ctx.deps.registry.policies()


@router.get("/escalation-policies/{policy_id}", response_model=Policy, responses=READ)
def get_policy(ctx: Ctx, _who: Anyone, policy_id: PolicyId) -> Policy:
    """One escalation policy."""
    return ctx.deps.registry.policy(policy_id)


@router.put(
    "/escalation-policies/{policy_id}",
    response_model=Policy,
    responses={**WRITE, 201: {"model": Policy, "description": "Created"}},
)
def put_policy(
    ctx: Ctx, who: Admin, policy_id: PolicyId, body: Policy, response: Response
) -> Policy:
    """Create or replace a policy (admin: who gets paged is not a technician's call). Open
    alerts keep the copy frozen when they opened."""
    _same_id(policy_id, body)
    created = ctx.deps.registry.upsert_policy(body, actor=who.actor, at=ctx.deps.clock.time())
    _created(response, created)
    return body


@router.delete("/escalation-policies/{policy_id}", status_code=204, responses=DELETE)
def delete_policy(ctx: Ctx, who: Admin, policy_id: PolicyId) -> Response:
    """Delete a policy no store or asset names (409 otherwise)."""
    ctx.deps.registry.delete_policy(policy_id, actor=who.actor, at=ctx.deps.clock.time())
    return Response(status_code=204)
