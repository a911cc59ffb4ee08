"""Bearer API keys, roles and store scope.

Keys are created with ``coldchain keys create --role R [--store S]`` and stored hashed
(:meth:`core.registry.Registry.create_api_key` says why sha256 suffices). A request names
its key in ``Authorization: Bearer cc_<id>_<secret>``.

**401 or 403.** 401 (with ``WWW-Authenticate: Bearer``) means "who are you?": no header,
another scheme, a malformed, unknown, wrong or revoked key; the answer does not say which,
so a client cannot probe for key ids. 403 means "I know who you are, and no": the role may
not do this, or a manager's key asks about a store outside its scope. Authentication runs
in :class:`api.app`'s gate middleware *before* the request body is read, so an anonymous
request is a 401 even when its body is malformed (otherwise FastAPI's body parsing would
answer 422 first and tell an anonymous caller about the route's schema).

**Roles** (DESIGN.md §1 and §3):

=========== ================================================================================
admin       everything, including escalation policies, API keys, the audit log and its
            verification
technician  reads everything; writes stores, assets, sensors, and the contacts of stores
            with the roles store_manager or technician (not chain-wide desks, not
            escalation roles); registers discovered devices; creates maintenance windows
            (silences), since technicians put units into maintenance (DESIGN.md §1). No
            ack/resolve: they are not paged. No escalation policies, no keys.
manager     its stores only: reads them, acknowledges, resolves and silences their alerts.
            Asking for another store (a filter, an alert, a sensor of it) is a 403, not an
            empty list or a 404, as the issue requires; so a manager learns that an alert id
            exists elsewhere, which is harmless (ids are random and carry nothing).
oncall      every store: reads, acknowledges, resolves, silences; the audit log.
=========== ================================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import problem
from core.registry import ApiKey, Registry

ADMIN, TECHNICIAN, MANAGER, ONCALL = "admin", "technician", "manager", "oncall"
EVERYONE = (ADMIN, TECHNICIAN, MANAGER, ONCALL)
REGISTRY_WRITERS = (ADMIN, TECHNICIAN)
RESPONDERS = (ADMIN, MANAGER, ONCALL)  # acknowledge and resolve
SILENCERS = (ADMIN, TECHNICIAN, MANAGER, ONCALL)
CHAIN_WIDE_READERS = (ADMIN, TECHNICIAN, ONCALL)  # data not tied to one store
AUDITORS = (ADMIN, ONCALL)

# A bearer value longer than this is refused without hashing it: real keys are 59 chars.
MAX_TOKEN_CHARS = 200
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="coldchain"'}
INVALID = {"WWW-Authenticate": 'Bearer realm="coldchain", error="invalid_token"'}


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    key: ApiKey

    @property
    def role(self) -> str:
        """The key's role."""
        return self.key.role

    @property
    def actor(self) -> str:
        """How the audit log and alerts name this caller (never the secret)."""
        return f"{self.key.name} [key {self.key.id}]"

    @property
    def scoped(self) -> bool:
        """True when the key sees only some stores."""
        return self.key.role == MANAGER

    def can_see(self, store: str | None) -> bool:
        """Whether this caller may see data of ``store``."""
        return not self.scoped or (store is not None and store in self.key.stores)

    def check_store(self, store: str | None) -> None:
        """Raise 403 unless this caller may see ``store``."""
        if not self.can_see(store):
            raise problem(403, f"this key is not allowed to access store {store!r}")

    def can_see_contact(self, stores: Iterable[str]) -> bool:
        """Whether this caller may see a contact covering ``stores`` (none: chain-wide).
        Managers see their stores' people, not chain-wide desks."""
        return not self.scoped or any(self.can_see(s) for s in stores)

    def visible(self, stores: Iterable[str]) -> list[str]:
        """The subset of ``stores`` this caller may see."""
        return [s for s in stores if self.can_see(s)]


def authenticate(registry: Registry, header: str | None) -> tuple[Principal | None, str]:
    """Resolve an ``Authorization`` header to a principal, or None and a reason to count."""
    if not header:
        return None, "missing"
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None, "scheme"
    if len(token) > MAX_TOKEN_CHARS:
        return None, "invalid"
    key = registry.api_key(token)
    if key is None:
        return None, "invalid"
    return Principal(key), "ok"


# Documents the scheme in OpenAPI (the lock in /docs); the gate has already authenticated.
_bearer = HTTPBearer(auto_error=False, description="An API key: `cc_<id>_<secret>`")


def _principal(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Principal:
    principal = getattr(request.state, "principal", None)
    if isinstance(principal, Principal):
        return principal
    # The gate sets it for every /api/v1 route; this covers a route mounted elsewhere.
    header = request.headers.get("authorization")
    found, reason = authenticate(request.app.state.context.deps.registry, header)
    if found is None:
        raise problem(401, "authentication required", CHALLENGE if reason == "missing" else INVALID)
    return found


def require(*roles: str) -> Callable[..., Principal]:
    """A dependency that returns the caller when its role is one of ``roles``, else 403."""

    def dependency(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        if principal.role not in roles:
            raise problem(403, f"role {principal.role!r} may not do this")
        return principal

    dependency.__name__ = f"require_{'_'.join(roles)}"
    return dependency


Anyone = Annotated[Principal, Depends(require(*EVERYONE))]
RegistryWriter = Annotated[Principal, Depends(require(*REGISTRY_WRITERS))]
Responder = Annotated[Principal, Depends(require(*RESPONDERS))]
Silencer = Annotated[Principal, Depends(require(*SILENCERS))]
ChainWideReader = Annotated[Principal, Depends(require(*CHAIN_WIDE_READERS))]
Auditor = Annotated[Principal, Depends(require(*AUDITORS))]
Admin = Annotated[Principal, Depends(require(ADMIN))]
