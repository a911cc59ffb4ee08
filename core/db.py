"""The registry's database: SQLite on one host, PostgreSQL when processes share it.

``COLDCHAIN_DB`` is a file path (SQLite, the default, what ``make demo`` and a single host
use) or a ``postgresql://user:password@host:5432/name`` URL (several processes on several
hosts: split mode, an alerting standby). Both go through SQLAlchemy's engine (the drivers,
the dialects, the URL parsing) and one migration history kept with Alembic
(``core/migrations``), so the schema is the same on both.

The registry's SQL stays plain text in the portable subset both dialects accept (``?``
placeholders, ``ON CONFLICT``, ``RETURNING``); :class:`Database` translates placeholders
for the PostgreSQL driver. Each :class:`Database` holds one connection, used under a lock,
as each component (ingest, alerting, the API) has its own.

Write transactions are serialized across processes, as SQLite's ``BEGIN IMMEDIATE`` does:
on PostgreSQL each one takes a transaction-scoped advisory lock first. The registry's
writes are few and short (a batch of dead letters, an escalation step), and serializing
them keeps the audit log's hash chain linear and acknowledgement codes unique with any
number of writers, without a retry loop around every transaction.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import IntegrityError as _IntegrityError
from sqlalchemy.pool import NullPool

# What callers catch, whatever the dialect: any error from the database, and a constraint
# refusing a write (a foreign key, a unique index).
DatabaseError = DBAPIError
IntegrityError = _IntegrityError

# The advisory lock every PostgreSQL write transaction takes (any constant works; it
# only has to differ from other applications' on the same database).
WRITE_LOCK = 0x636F6C64  # "cold"
# The advisory lock held while migrating, so processes starting together take turns.
MIGRATE_LOCK = 0x6D696772  # "migr"
# How long a SQLite connection waits for another writer. Shorter and a busy moment fails
# a write ("database is locked"); longer and a stuck writer stalls everyone that long.
SQLITE_BUSY_S = 10.0
# File mode of a SQLite registry (and so of its WAL files): the service account only.
SQLITE_MODE = 0o600


class Row(tuple[Any, ...]):
    """A result row: by position (``row[0]``) or by column (``row["id"]``, ``dict(row)``)."""

    _keys: tuple[str, ...]

    def __new__(cls, values: Sequence[Any], keys: tuple[str, ...]) -> Row:
        row = super().__new__(cls, values)
        row._keys = keys
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return super().__getitem__(self._keys.index(key))
        return super().__getitem__(key)

    def keys(self) -> tuple[str, ...]:
        """Column names, in order."""
        return self._keys


class Cursor:
    """What a statement returned: rows, how many it changed."""

    def __init__(self, result: CursorResult[Any]) -> None:
        self._result = result
        self._keys = tuple(result.keys()) if result.returns_rows else ()
        self.rowcount = result.rowcount

    def fetchone(self) -> Row | None:
        """The next row, or None."""
        row = self._result.fetchone()
        return None if row is None else Row(tuple(row), self._keys)

    def fetchall(self) -> list[Row]:
        """Every remaining row."""
        return [Row(tuple(r), self._keys) for r in self._result.fetchall()]


class Transaction:
    """The statements of one write transaction (what ``Database.transaction`` yields)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def execute(self, sql: str, args: Iterable[Any] = ()) -> Cursor:
        """Run one statement with ``?`` placeholders."""
        return self._db.run(sql, tuple(args))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Cursor:
        """Run one statement once per row of arguments."""
        return self._db.run_many(sql, [tuple(r) for r in rows])


class Database:
    """One connection to the registry database; see the module docstring."""

    def __init__(self, target: str | Path) -> None:
        text = str(target)
        self.url = text
        self.path: Path | None = None
        if "://" in text:
            if not text.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
                raise ValueError("COLDCHAIN_DB: a file path or a postgresql:// URL")
            url = "postgresql+psycopg://" + text.split("://", 1)[1]
            # One connection per Database, held for its life: no pool to size or drain.
            self.engine: Engine = create_engine(url, poolclass=NullPool)
            self.dialect = "postgresql"
        else:
            self.path = Path(text)
            if text != ":memory:":
                _prepare_sqlite_file(self.path)
            self.engine = create_engine(
                f"sqlite:///{text}",
                poolclass=NullPool,
                connect_args={
                    "check_same_thread": False,
                    "timeout": SQLITE_BUSY_S,
                    "isolation_level": None,  # transactions are ours (BEGIN IMMEDIATE)
                },
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
            self.dialect = "sqlite"
        self._lock = threading.RLock()
        self._conn: Connection = self._connect()

    def _connect(self) -> Connection:
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def _live(self) -> Connection:
        """The connection, replaced when the last statement found it dead (a database
        restart or failover): that statement failed, the next one reconnects."""
        if self._conn.invalidated or self._conn.closed:
            with contextlib.suppress(DBAPIError):
                self._conn.close()
            self._conn = self._connect()
        return self._conn

    @property
    def postgres(self) -> bool:
        """True on PostgreSQL."""
        return self.dialect == "postgresql"

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
            self.engine.dispose()

    def _sql(self, sql: str) -> str:
        if not self.postgres:
            return sql
        return sql.replace("%", "%%").replace("?", "%s")

    def run(self, sql: str, args: tuple[Any, ...] = ()) -> Cursor:
        """One statement (outside or inside a transaction; callers hold the lock)."""
        with self._lock:
            return Cursor(self._live().exec_driver_sql(self._sql(sql), args))

    def run_many(self, sql: str, rows: list[tuple[Any, ...]]) -> Cursor:
        """One statement per row of arguments."""
        with self._lock:
            if not rows:
                return Cursor(self._live().exec_driver_sql("SELECT 1 WHERE 1 = 0"))
            return Cursor(self._live().exec_driver_sql(self._sql(sql), rows))

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[Row]:
        """Run one read statement."""
        return self.run(sql, tuple(args)).fetchall()

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A write transaction, serialized with every other writer, committed on success."""
        with self._lock:
            conn = self._live()
            if self.postgres:
                conn.exec_driver_sql("BEGIN")
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield Transaction(self)
            except BaseException:
                if not conn.invalidated:
                    with contextlib.suppress(DBAPIError):
                        conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")

    def json_field(self, column: str, key: str) -> str:
        """SQL for a top-level text field of a JSON document column (identifiers only,
        never user input)."""
        if self.postgres:
            return f"({column}::json ->> '{key}')"
        return f"json_extract({column}, '$.{key}')"

    def has_table(self, name: str) -> bool:
        """Whether ``name`` exists."""
        with self._lock:
            return inspect(self._conn).has_table(name)

    @contextmanager
    def migration_lock(self) -> Iterator[Connection]:
        """The connection, held exclusively against other processes migrating."""
        with self._lock:
            if self.postgres:
                self._conn.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATE_LOCK})")
                try:
                    yield self._conn
                finally:
                    self._conn.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATE_LOCK})")
                return
            lock_path = f"{self.path}.migrate.lock" if self.path else None
            if lock_path is None or str(self.path) == ":memory:":
                yield self._conn
                return
            # A lock file beside the database, never the database file itself: closing a
            # descriptor of it would drop this process's SQLite locks (core/registry.py).
            with open(lock_path, "a") as lock:  # noqa: PTH123 - fcntl needs the descriptor
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    yield self._conn
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)


class SessionLock:
    """A named lock that a process holds for as long as it runs, seen from every host: a
    session-level advisory lock of PostgreSQL on a connection of its own (the lock ends
    with :meth:`release`, or with the connection: the process died, or the database
    restarted, after which another process may take it; the holder calls :meth:`keep`
    now and then to take it again).

    ``name`` is hashed to the lock's 64-bit key (collisions between two names are as
    likely as for any 64-bit hash: none in practice).
    """

    def __init__(self, url: str, name: str) -> None:
        self.name = name
        self.key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        self._url = url
        self._db: Database | None = None

    def try_acquire(self) -> bool:
        """Take the lock if no other session holds it; True when this one now does.

        Raises:
            DatabaseError: the database cannot be reached.
        """
        if self._db is not None:
            return True
        db = Database(self._url)
        if not db.postgres:
            db.close()
            raise ValueError("SessionLock needs a PostgreSQL database")
        try:
            held = self._take(db)
        except BaseException:
            db.close()
            raise
        if not held:
            db.close()
            return False
        self._db = db
        return True

    def keep(self) -> bool:
        """Whether this process still holds the lock, taking it again when its session
        ended under it (the database restarted, or the backend was terminated): True when
        held now, False when another session took it meanwhile (or it was never taken).

        Raises:
            DatabaseError: the database cannot be reached (whether held is unknown).
        """
        db = self._db
        if db is None:
            return False
        try:
            held = self._held(db)
        except DatabaseError:  # the session died with the lock; the next statement reconnects
            held = self._held(db)
        return held or self._take(db)

    def _take(self, db: Database) -> bool:
        """Take the lock on ``db``'s session if no other session holds it."""
        return bool(db.run("SELECT pg_try_advisory_lock(?)", (self.key,)).fetchall()[0][0])

    def _held(self, db: Database) -> bool:
        """Whether ``db``'s current session holds the lock (a bigint advisory lock is
        listed with its high half as ``classid`` and its low half as ``objid``)."""
        rows = db.run(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND pid = pg_backend_pid() AND classid::text::bigint = ((? >> 32) & 4294967295)"
            " AND objid::text::bigint = (? & 4294967295) AND objsubid = 1",
            (self.key, self.key),
        ).fetchall()
        return bool(rows[0][0])

    def release(self) -> None:
        """Give the lock up (closing its connection ends it)."""
        if self._db is not None:
            self._db.close()
            self._db = None


def _prepare_sqlite_file(path: Path) -> None:
    """Create the file 0600 when new, tighten an older one; never open an existing one
    (closing any descriptor of a file drops every POSIX lock this process holds on it,
    including other connections' SQLite locks: seen as "disk I/O error")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, SQLITE_MODE))
    elif path.stat().st_mode & 0o777 != SQLITE_MODE:
        path.chmod(SQLITE_MODE)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_S * 1000)}")
    cursor.close()
