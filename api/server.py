"""Serving the API with uvicorn, in a thread, with the lifecycle of every component.

:class:`ApiServer` follows STYLE.md §9: construct without I/O, :meth:`~ApiServer.start`
binds the socket and returns once uvicorn serves (or raises), :meth:`~ApiServer.stop`
lets in-flight requests finish (up to :data:`GRACEFUL_S`) and joins the thread. It runs
in a thread so ``coldchain run`` keeps the main thread for signals; uvicorn installs no
signal handlers outside the main thread. :func:`serve` is the blocking form for
``coldchain api``: start, wait for ``stop_event``, stop.

uvicorn gets ``log_config=None`` (the process's logging stays as configured, and nothing
uvicorn logs carries a secret) and no access log: request counts by route and status are
in ``/metrics``, and one INFO line per Prometheus scrape helps nobody.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

import uvicorn

from api.app import create_app
from api.context import ApiDeps
from api.latest import LatestCache

log = logging.getLogger(__name__)

# In-flight requests get this long to finish at stop. Too short cuts an ack mid-way (the
# transaction either committed or not; the client just sees a reset); too long delays a
# SIGTERM shutdown, and systemd's own stop timeout (90 s) must stay well above it.
GRACEFUL_S = 5
# start() gives up after this long without uvicorn reporting it serves.
START_TIMEOUT_S = 15.0


class ApiServer:
    """uvicorn serving :func:`~api.app.create_app` on ``host:port`` in a thread."""

    def __init__(self, deps: ApiDeps, host: str, port: int) -> None:
        """Prepare (no socket yet). ``port=0`` picks a free port; read :attr:`port`."""
        self.deps = deps
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @classmethod
    def for_stack(cls, stack: Any, latest: LatestCache | None = None) -> ApiServer:
        """The API of a ``coldchain.compose.Stack`` (``coldchain run``) on ``api_bind``,
        serving latest readings from ``latest`` when the stack's ingest feeds it."""
        ingester = stack.ingester
        deps = ApiDeps(
            settings=stack.settings,
            registry=stack.registry,
            influx=stack.influx,
            engine=stack.engine,
            clock=stack.clock,
            metrics=stack.metrics,
            ingest_stats=ingester.stats,
            mqtt_ready=ingester.source.connected.is_set,
            latest=latest,
        )
        host, port = stack.settings.api_host_port
        return cls(deps, host, port)

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Bind, start serving in a thread, and return once requests are answered.

        Raises:
            OSError: the address cannot be bound (in use, not local).
            RuntimeError: uvicorn did not start in time or stopped at start-up.
        """
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto must say TCP: asyncio sets TCP_NODELAY only on sockets whose proto is
        # IPPROTO_TCP (accepted ones inherit it). With proto 0, Nagle's algorithm meets the
        # client's delayed ACK and every keep-alive response waits ~40 ms.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            create_app(self.deps),
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=GRACEFUL_S,
            server_header=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, args=(sock,), name="api", daemon=True)
        self._thread.start()
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive() or waited >= START_TIMEOUT_S:
                self.stop()
                raise RuntimeError(f"the API did not start on {self.url}: {self._error!r}")
            self._thread.join(0.02)
            waited += 0.02
        log.info("API listening on %s (docs at %s/docs)", self.url, self.url)

    def _run(self, sock: socket.socket) -> None:
        assert self._server is not None
        try:
            self._server.run(sockets=[sock])
        except BaseException as exc:  # reported by start() and logged; the thread must end
            self._error = exc
            log.exception("the API server stopped with an error")
        finally:
            sock.close()

    def stop(self) -> None:
        """Finish in-flight requests (bounded), close the socket, join the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(GRACEFUL_S + 5)
            if self._thread.is_alive():
                log.warning("the API thread did not stop in time")
        self._thread = None
        self._server = None


def serve(deps: ApiDeps, host: str, port: int, stop_event: threading.Event) -> None:
    """Serve until ``stop_event`` is set (``coldchain api``: set it from SIGTERM/SIGINT).

    Args:
        deps: The services (the caller starts and stops them).
        host: Address to bind (``COLDCHAIN_API_BIND``'s host).
        port: Port to bind.
        stop_event: Set it to stop.
    """
    server = ApiServer(deps, host, port)
    server.start()
    try:
        while not stop_event.wait(0.5):
            pass
    finally:
        server.stop()
