"""core/db.py SessionLock: a lock a process holds for its life, seen from every host.

Was: with a PostgreSQL registry, ingest claimed its MQTT client id with a lock file in
its own spool folder, so a second ingester with the same id and another spool folder (or
on another host) started, and the two took the broker session from each other
(test_a_second_ingester_with_the_same_client_id_is_refused_at_start failed under
``--registry=postgresql``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from coldchain.services import PostgreSQL
from core.db import Database, SessionLock
from core.settings import Settings
from ingest.service import ClaimError, _DatabaseClaim


def _end_session_of(url: str, lock: SessionLock) -> int:
    """End the database session holding ``lock`` (what a database restart does to every
    session); how many sessions were ended."""
    killer = Database(url)
    try:
        [(ended,)] = killer.query(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks"
            " WHERE locktype = 'advisory' AND granted"
            " AND objid::text::bigint = (? & 4294967295)",
            (lock.key,),
        )
    finally:
        killer.close()
    return int(ended)


def _until(what: str, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


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
        assert _end_session_of(url, second) == 1
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


@pytest.mark.integration
def test_a_holder_takes_its_lock_again_after_the_database_ended_its_session(
    postgres: PostgreSQL, caplog: pytest.LogCaptureFixture
) -> None:
    """Was: a PostgreSQL restart ended the ingester's session and its client-id lock with
    it, and nothing took it again, so a second ingester with the same id could start."""
    url = postgres.database("keep")
    mine, theirs = SessionLock(url, "ingest-k"), SessionLock(url, "ingest-k")
    try:
        assert mine.try_acquire()
        assert mine.keep()  # held: nothing to do
        assert not theirs.try_acquire()
        assert _end_session_of(url, mine) == 1
        _until("taken again", mine.keep)  # its first statement fails, then it reconnects
        assert not theirs.try_acquire()

        # Lost: another process took it between the session's end and the next check.
        assert _end_session_of(url, mine) == 1
        _until("taken by the other", theirs.try_acquire)
        assert not mine.keep()
    finally:
        mine.release()
        theirs.release()

    claim, rival = (_DatabaseClaim(url, "coldchain-ingest-9") for _ in range(2))
    claim.acquire()
    try:
        assert _end_session_of(url, claim._lock) == 1
        _until("the rival in", lambda: _try(rival))
        with caplog.at_level(logging.ERROR, logger="ingest.service"):
            claim.keep()
        assert claim.lost
        assert "taken by another ingester" in caplog.text
    finally:
        claim.release()
        rival.release()


def _try(claim: _DatabaseClaim) -> bool:
    try:
        claim.acquire()
    except ClaimError:
        return False
    return True
