"""core/db.py SessionLock: a lock a process holds for its life, seen from every host.

Was: with a PostgreSQL registry, ingest claimed its MQTT client id with a lock file in
its own spool folder, so a second ingester with the same id and another spool folder (or
on another host) started, and the two took the broker session from each other
(test_a_second_ingester_with_the_same_client_id_is_refused_at_start failed under
``--registry=postgresql``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from coldchain.services import PostgreSQL
from core.db import Database, SessionLock
from core.settings import Settings
from ingest.service import ClaimError, _DatabaseClaim


@pytest.mark.integration
def test_one_holder_per_name_released_on_release_and_when_its_connection_dies(
    postgres: PostgreSQL,
) -> None:
    url = postgres.database("locks")
    first, second = SessionLock(url, "ingest-a"), SessionLock(url, "ingest-a")
    other = SessionLock(url, "ingest-b")
    try:
        assert first.try_acquire()
        assert first.try_acquire()  # held already: still this one's
        assert not second.try_acquire()
        assert other.try_acquire()  # another name
        first.release()
        assert second.try_acquire()
        # The holder dies without a word: its connection ends, and so does the lock.
        assert second._db is not None
        killer = Database(url)
        try:
            [(ended,)] = killer.query(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks"
                " WHERE locktype = 'advisory' AND granted"
                " AND objid::text::bigint = (? & 4294967295)",
                (second.key,),
            )
        finally:
            killer.close()
        assert ended == 1
        # taken over once the backend has gone (it exits asynchronously), while second's
        # connection object lingers in this process
        deadline = time.monotonic() + 10
        while not first.try_acquire():
            assert time.monotonic() < deadline, "the dead session's lock was never released"
            time.sleep(0.05)
    finally:
        for lock in (first, second, other):
            lock.release()


@pytest.mark.integration
def test_a_second_ingester_with_the_same_id_is_refused_whatever_its_folder(
    postgres: PostgreSQL, tmp_path: Path
) -> None:
    url = postgres.database("claims")
    one = _DatabaseClaim(url, "coldchain-ingest-1")
    two = _DatabaseClaim(url, "coldchain-ingest-1")  # another host: nothing in common but the DB
    one.acquire()
    try:
        with pytest.raises(ClaimError, match="coldchain-ingest-1 is in use"):
            two.acquire()
    finally:
        one.release()
    two.acquire()
    two.release()
    with pytest.raises(ValueError, match="PostgreSQL"):
        SessionLock(str(tmp_path / "r.sqlite3"), "x").try_acquire()
    assert not Settings(db=url).db_is_file
