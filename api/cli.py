"""The API's CLI commands, wired into ``coldchain`` by ``coldchain/cli.py``.

- ``coldchain keys create --role R [--store S ...] [--name N]`` prints a new API key once;
  only its hash is stored, so a lost key is revoked and replaced, never recovered.
- ``coldchain keys list`` shows every key (never a secret); ``coldchain keys revoke ID``
  revokes one at once, audited.
- ``coldchain audit verify`` walks the audit log's hash chain; exit 1 when it is broken.

Each handler takes ``(args, settings)`` and returns the exit code, like every other
``coldchain`` subcommand.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

from core.errors import NotFound, RegistryError
from core.registry import Registry
from core.settings import Settings


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    """Create an API key and print it (the only time it is shown).

    Args:
        args: ``role`` (admin | technician | manager | oncall), ``store`` (list of store
            ids, required for manager keys, refused for the others), ``name`` (a label for
            the audit log and alerts' ``acked_by``; optional).
        settings: Where the registry is.

    Returns:
        0 on success, 2 when the role, stores or name are not acceptable.
    """
    registry = Registry(settings.db)
    try:
        key = registry.create_api_key(
            args.role, list(getattr(args, "store", None) or []), getattr(args, "name", "") or ""
        )
    except RegistryError as exc:
        sys.stderr.write(f"keys create: {exc}\n")
        return 2
    finally:
        registry.close()
    sys.stdout.write(f"{key}\n")
    sys.stderr.write(
        "Store this key now: only its hash is kept. Use it as 'Authorization: Bearer <key>'.\n"
    )
    return 0


def cmd_keys_list(_args: argparse.Namespace, settings: Settings) -> int:
    """Print every API key (id, role, stores, name, created, revoked); never a secret."""
    registry = Registry(settings.db)
    try:
        keys = registry.api_keys()
    finally:
        registry.close()
    sys.stdout.write(
        f"{'id':<18} {'role':<10} {'created (UTC)':<17} {'revoked':<17} name [stores]\n"
    )
    for key in keys:
        revoked = _utc(key.revoked_at) if key.revoked_at is not None else "-"
        stores = f" [{', '.join(key.stores)}]" if key.stores else ""
        sys.stdout.write(
            f"{key.id:<18} {key.role:<10} {_utc(key.created_at):<17} {revoked:<17} "
            f"{key.name}{stores}\n"
        )
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """Revoke a key by id (``keys list`` shows ids). Returns 1 when unknown or revoked."""
    registry = Registry(settings.db)
    try:
        registry.revoke_api_key(args.key_id, time.time())
    except NotFound as exc:
        sys.stderr.write(f"keys revoke: {exc}\n")
        return 1
    finally:
        registry.close()
    sys.stdout.write(f"key {args.key_id} revoked\n")
    return 0


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def cmd_audit_verify(_args: argparse.Namespace, settings: Settings) -> int:
    """Verify the audit log's hash chain.

    Prints how many entries were checked and, when the chain is broken, the id of the
    first entry that does not match (it or an earlier row was changed, or rows were
    deleted or reordered).

    Returns:
        0 when intact, 1 when tampered with.
    """
    registry = Registry(settings.db)
    try:
        intact, bad, checked = registry.audit_verify()
    finally:
        registry.close()
    if intact:
        sys.stdout.write(f"audit log intact: {checked} entries checked\n")
        return 0
    sys.stdout.write(f"audit log TAMPERED: {checked} entries verified, first bad entry id {bad}\n")
    return 1
