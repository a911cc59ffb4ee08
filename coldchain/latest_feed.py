"""A standalone API's latest values, fed by the observations ingest publishes (split mode).

In ``coldchain run`` the API's latest-value cache (:mod:`api.latest`) is fed in memory by
ingest in the same process. Split across processes, every ``coldchain ingest`` with
``COLDCHAIN_PUBLISH_OBSERVATIONS`` publishes each durable batch's observations on
:data:`ingest.observations.TOPIC` for ``coldchain alerting``; :class:`LatestFeed` lets
``coldchain api`` read the same stream, so ``GET /readings/latest`` is served from memory
there too (an InfluxDB query per request costs ~90 ms at p99 on the project machine; the
target is 20 ms, docs/performance.md), whatever the number of ingest processes.

Exactness rests on one rule: the cache serves a store from memory only while the feed
misses nothing. The session is not kept on the broker (expiry 0: what was published
while the API was away is in InfluxDB, and the next priming query reads it), so the cache
is suspended from start and on every lost connection, and resumed only once the broker
acknowledged the subscription; a priming query begun before that primes nothing. One
gap remains: a connection that dies silently (a cut network, not a closed socket) is
noticed only within the MQTT keepalive (20-30 s), and until then the cache can lag by
that much.
"""

from __future__ import annotations

import logging
import os

from api.latest import LatestCache
from core.settings import Settings
from ingest import observations
from ingest.mqtt import AckToken, MqttSource

log = logging.getLogger(__name__)

# Unacknowledged observation batches in flight to the API (each a few hundred kB at most);
# the handler only merges them into memory, so a small window never holds the feed back.
FEED_WINDOW = 100


class LatestFeed:
    """Feeds ``cache`` from the observation stream; see the module docstring."""

    def __init__(self, settings: Settings, cache: LatestCache) -> None:
        self.cache = cache
        cache.suspend()  # nothing from memory before the subscription is in place
        self.batches = 0
        self.undecodable = 0
        # One session per process, forgotten at disconnect: two API processes on one host
        # must not take each other's connection (same client id), and none needs a queue.
        self.source = MqttSource(
            settings.mqtt,
            f"coldchain-api-{settings.instance_name}-{os.getpid()}",
            [observations.TOPIC],
            self._handle,
            receive_maximum=FEED_WINDOW,
            on_connection_change=self._changed,
            on_subscribed=cache.resume,
            session_expiry=0,
        )

    def start(self) -> None:
        """Connect and subscribe in the background (the network thread reconnects)."""
        self.source.start()

    def stop(self) -> None:
        """Disconnect; the cache stops serving from memory."""
        self.source.pause()
        self.source.stop()
        self.cache.suspend()

    def _changed(self, up: bool) -> None:
        if not up:
            self.cache.suspend()
            log.warning("latest-value feed lost: /readings/latest queries InfluxDB meanwhile")

    def _handle(self, topic: str, payload: bytes, _retained: bool, token: AckToken) -> None:
        try:
            batch, _durable_at = observations.decode_timed(payload)
        except ValueError:
            self.undecodable += 1
            log.exception("undecodable observation batch on %s", topic)
        else:
            self.cache.observe(batch)
            self.batches += 1
        self.source.ack(token)
