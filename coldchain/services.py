"""Start private Mosquitto and InfluxDB 1.x servers on free loopback ports.

Used by the test harness (once per session) and by ``coldchain demo``. Each server gets
its own folder with its own config file, data and log; nothing touches the system
services or the default ports 1883/8086. Both configs raise the limits that silently lose
data in the defaults (research/perf-limits.md §2.5): Mosquitto's ``max_queued_messages``
1000 drops QoS 1 messages queued for a slow or offline persistent client.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

# Mosquitto's max_packet_size in every broker config we start (and docs/operations.md).
MAX_PACKET_SIZE = 1024 * 1024


class ServiceError(RuntimeError):
    """A local server could not be found, started or stopped."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary(name: str, *extra_dirs: str) -> str:
    """The path of ``name`` on PATH or in the Debian sbin/bin folders."""
    found = shutil.which(name)
    if found:
        return found
    for folder in (*extra_dirs, "/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise ServiceError(
        f"{name} not found; run ./scripts/ensure-system-deps.sh (make test/demo does it)"
    )


class _Server:
    """A child process with a folder, a port, start/stop/restart and a context manager."""

    name = "server"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = self.root / f"{self.name}.log"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id while running."""
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until the server answers."""
        if self.running:
            return
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                self._command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self._log.read_text(errors="replace")[-2000:]
                raise ServiceError(f"{self.name} exited with {self._proc.returncode}:\n{tail}")
            if self._ready():
                return
            time.sleep(0.05)
        self.stop()
        raise ServiceError(f"{self.name} did not answer on port {self.port} in {timeout:.0f}s")

    # The signal that stops the server promptly (SIGTERM for most).
    stop_signal = signal.SIGTERM

    def stop(self, timeout: float = 20.0) -> None:
        """The stop signal, wait, then SIGKILL if it will not go."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(self.stop_signal)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, no chance to save state."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the server hangs (connections open, no answers)."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Stop, then start on the same port with the same data."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Mosquitto(_Server):
    """A private Mosquitto 2.x broker with persistence (sessions survive restarts)."""

    name = "mosquitto"

    def __init__(
        self,
        root: Path,
        *,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        username_as_client_id: bool = False,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        super().__init__(root)
        self.tls_port = free_port() if tls is not None else None
        self.config = self.root / "mosquitto.conf"
        data = self.root / "data"
        data.mkdir(exist_ok=True)
        self.config.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    # Run as whoever started us: as root, mosquitto would otherwise switch
                    # to the "mosquitto" user and fail to write our persistence folder.
                    f"user {getpass.getuser()}",
                    "allow_anonymous true",
                    "persistence true",
                    f"persistence_location {data}/",
                    # Save the session store every few seconds, not only at shutdown.
                    "autosave_interval 5",
                    # 0 = unlimited. The default 1000 silently drops QoS 1 messages queued
                    # for our persistent session while the ingester is down or slow.
                    "max_queued_messages 0",
                    "max_queued_bytes 0",
                    # Largest MQTT packet any client may send us (issue 13: one 256 MiB
                    # message took the broker to 0.8 GB). Devices send < 64 KiB; split
                    # mode's observation batches stay under 1 MiB (observations.py).
                    # Too low and those are refused (the sender is disconnected); too
                    # high and one client can make the broker hold that much per message.
                    f"max_packet_size {MAX_PACKET_SIZE}",
                    # MQTT 3.1.1 clients: in-flight window; MQTT 5 clients (our ingester)
                    # set their own Receive Maximum.
                    "max_inflight_messages 1000",
                    # Send small packets (PUBACKs, one reading) at once: with Nagle's
                    # algorithm each waits up to the peer's 40 ms delayed ACK.
                    "set_tcp_nodelay true",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "",
                ]
            )
        )
        if tls is not None:
            self._tls_listener(*tls)
        if password_file is not None or acl_file is not None:
            self._secure(password_file, acl_file, username_as_client_id)

    def _tls_listener(self, certfile: Path, keyfile: Path) -> None:
        """A second listener on :attr:`tls_port` speaking TLS 1.2+ with this certificate
        (docs/operations.md, section 4; the plain one stays for the harness's readiness)."""
        lines = [
            f"listener {self.tls_port} 127.0.0.1",
            f"certfile {certfile}",
            f"keyfile {keyfile}",
            "tls_version tlsv1.2",
        ]
        with self.config.open("a") as config:
            config.write("\n".join(lines) + "\n")

    def _secure(
        self, password_file: Path | None, acl_file: Path | None, username_as_client_id: bool
    ) -> None:
        """Authenticated clients only, confined by an ACL (docs/operations.md, section 12).

        Appended to the config: for ``allow_anonymous`` the last line wins, and
        ``use_username_as_clientid`` applies to the listener (the only one).
        """
        lines = ["allow_anonymous false"]
        if password_file is not None:
            lines.append(f"password_file {password_file}")
        if acl_file is not None:
            lines.append(f"acl_file {acl_file}")
        if username_as_client_id:
            lines.append("use_username_as_clientid true")
        with self.config.open("a") as config:
            config.write("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:<port>``."""
        return f"mqtt://127.0.0.1:{self.port}"

    def tls_url(self, host: str = "localhost") -> str:
        """``mqtts://<host>:<tls port>`` (the name the certificate must carry)."""
        if self.tls_port is None:
            raise ServiceError("this broker was started without a TLS listener")
        return f"mqtts://{host}:{self.tls_port}"

    def _command(self) -> list[str]:
        return [find_binary("mosquitto"), "-c", str(self.config)]

    def _ready(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
        ):
            return True
        return False


# The InfluxDB index and cardinality limits, as docs/operations.md (section 12) sets them
# in production, sized for 300 stores x ~50 sensors (the arithmetic is there). Tests, the
# demo and the benchmarks run with the same settings.
#
# tsi1 keeps the series index on disk (memory-mapped) instead of in the heap (inmem), so
# memory and start-up time stop growing with every series of 800 days of shards; inmem
# rebuilds it in RAM at each start and is what runs out at chain scale. tsi1 costs a few
# files per database and shard. InfluxDB 1.6 to 1.8 enforce the two limits below only
# with inmem: with tsi1 they are ignored (tests/security/test_influx_limits.py shows both
# behaviours), so under tsi1 the bound on made-up device ids is ingest's.
INDEX_VERSION = "tsi1"
# Distinct values of one tag key in one measurement (inmem only). `sensor` is the largest:
# 15,000 sensors, x1.5 for replaced ones still within the retention, x2 growth: ~45,000.
# Too low: points that add a value (a sensor registered later) are refused with 400
# "partial write: max-values-per-tag limit exceeded" and dead-lettered. Too high: a flood
# of made-up ids creates that many series per measurement before anything stops it.
MAX_VALUES_PER_TAG = 50_000
# Series in one database (inmem only). Expected ~375,000: 15,000 sensors x 5 quantities,
# faults, statuses and alert events, x2 as a sensor's tags change when it is registered,
# x1.5 churn. Too low: every new series of the database is refused, alert events
# included. Too high: RAM (inmem holds every series). It must not trip before
# max-values-per-tag does: a flood of ids adds at most 7 measurements x 50,000 series.
MAX_SERIES_PER_DATABASE = 1_000_000


class InfluxDB(_Server):
    """A private InfluxDB 1.x server (``influxd``) with its own meta, data and WAL."""

    name = "influxd"

    def __init__(
        self,
        root: Path,
        *,
        index_version: str = INDEX_VERSION,
        max_values_per_tag: int = MAX_VALUES_PER_TAG,
        max_series_per_database: int = MAX_SERIES_PER_DATABASE,
    ) -> None:
        super().__init__(root)
        self.rpc_port = free_port()
        self.config = self.root / "influxd.conf"
        self.config.write_text(
            f"""reporting-enabled = false
bind-address = "127.0.0.1:{self.rpc_port}"

[meta]
  dir = "{self.root / "meta"}"

[data]
  dir = "{self.root / "data"}"
  wal-dir = "{self.root / "wal"}"
  index-version = "{index_version}"
  max-values-per-tag = {max_values_per_tag}
  max-series-per-database = {max_series_per_database}
  query-log-enabled = false

[monitor]
  store-enabled = false

[continuous_queries]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
  pprof-enabled = false

[ifql]
  enabled = false
  bind-address = "127.0.0.1:{free_port()}"

[logging]
  level = "warn"
  suppress-logo = true
"""
        )

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        return [find_binary("influxd"), "-config", str(self.config)]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=0.5) as response:  # noqa: S310
                return int(response.status) in (200, 204)
        except (urllib.error.URLError, OSError):
            return False


# Where Debian keeps PostgreSQL 15's server programs (not on PATH).
POSTGRES_BIN = "/usr/lib/postgresql/15/bin"


class PostgreSQL(_Server):
    """A private PostgreSQL 15 cluster (initdb in the folder, trust auth on loopback).

    PostgreSQL refuses to run as root: when we are root the cluster lives in a folder of
    its own under the system's temporary folder (the test's own folders are closed to other
    users), owned by the ``postgres`` user, and the server runs as that user (``runuser``).
    """

    name = "postgres"
    # SIGTERM is PostgreSQL's "smart" shutdown, which waits for every client to leave;
    # SIGINT is "fast": sessions are ended, the cluster is shut down cleanly.
    stop_signal = signal.SIGINT

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.home = self.root
        self.user = "coldchain"
        self._as: list[str] = []
        if os.geteuid() == 0:
            self.home = Path(tempfile.mkdtemp(prefix="coldchain-pg-"))
            shutil.chown(self.home, "postgres")
            # setpriv execs (runuser would stay in between and take our signals).
            self._as = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
        self.data = self.home / "data"
        if not (self.data / "PG_VERSION").exists():
            done = subprocess.run(
                [*self._as, find_binary("initdb", POSTGRES_BIN), "-D", str(self.data),
                 "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync"],
                check=False, capture_output=True, timeout=120,
            )  # fmt: skip
            if done.returncode != 0:
                raise ServiceError(f"initdb: {done.stderr.decode(errors='replace')[-2000:]}")
        self._databases = 0

    def remove(self) -> None:
        """Stop the server and delete its cluster (``stop`` keeps it, for restarts)."""
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    def _command(self) -> list[str]:
        return [
            *self._as, find_binary("postgres", POSTGRES_BIN), "-D", str(self.data),
            "-p", str(self.port), "-k", str(self.home), "-c", "listen_addresses=127.0.0.1",
            # A test cluster: nothing to keep across a crash, everything for speed.
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=300",
        ]  # fmt: skip

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                pass
        except OSError:
            return False
        return self._psql("postgres", "SELECT 1").returncode == 0

    def _psql(self, database: str, sql: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [find_binary("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
             "-d", database, "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip

    def database(self, prefix: str = "t") -> str:
        """A new empty database; its URL."""
        self._databases += 1
        name = f"{prefix}{self._databases}"
        done = self._psql("postgres", f'CREATE DATABASE "{name}"')
        if done.returncode != 0:
            raise ServiceError(f"CREATE DATABASE {name}: {done.stderr.decode(errors='replace')}")
        return self.url_of(name)

    def url_of(self, database: str) -> str:
        """The URL of one of its databases."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"
