"""API keys: list, create, revoke (admin only), each audited.

The secret exists once, in the answer to ``POST /keys`` (as with ``coldchain keys
create``); only its hash is stored, so listing shows who and what each key is for, never
the key. Revoking takes effect on the key's next request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.auth import Admin
from api.context import Ctx
from api.errors import Unprocessable, problem, responses
from api.schemas import KeyCreated, KeyIn, KeyOut, utc_required
from core.errors import NotFound, RegistryError
from core.registry import ApiKey

router = APIRouter(tags=["keys"])

KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{8,64}$")]


def _out(key: ApiKey) -> KeyOut:
    return KeyOut(
        id=key.id, name=key.name, role=key.role, stores=list(key.stores),
        created_at=utc_required(key.created_at),
        revoked_at=None if key.revoked_at is None else utc_required(key.revoked_at),
    )  # fmt: skip


@router.get("/keys", response_model=list[KeyOut], responses=responses(401, 403))
def list_keys(ctx: Ctx, _who: Admin) -> list[KeyOut]:
    """Every key, revoked ones included, oldest first; never a secret."""
    return [_out(k) for k in ctx.deps.registry.api_keys()]


@router.post("/keys", response_model=KeyCreated, status_code=201, responses=responses(401, 403))
def create_key(ctx: Ctx, who: Admin, body: KeyIn) -> KeyCreated:
    """Create a key; the answer is the only time its secret is shown."""
    registry = ctx.deps.registry
    try:
        secret = registry.create_api_key(
            body.role, body.stores, body.name, ctx.deps.clock.time(), actor=who.actor
        )
    except NotFound as exc:
        raise Unprocessable(["body", "stores"], str(exc)) from None
    except RegistryError as exc:
        raise Unprocessable(["body"], str(exc)) from None
    key_id = secret.split("_")[1]
    [created] = [k for k in registry.api_keys() if k.id == key_id]
    return KeyCreated(key=secret, **_out(created).model_dump())


@router.delete("/keys/{key_id}", status_code=204, responses=responses(401, 403, 404))
def revoke_key(ctx: Ctx, who: Admin, key_id: KeyId) -> None:
    """Revoke a key at once (404 if unknown or already revoked)."""
    try:
        ctx.deps.registry.revoke_api_key(key_id, ctx.deps.clock.time(), actor=who.actor)
    except NotFound as exc:
        raise problem(404, str(exc)) from None
