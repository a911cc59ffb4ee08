"""core/metrics.py on prometheus-client: the small API the code uses, what a scraper reads
(prometheus-client's own text parser), and the listener ingest and alerting serve on."""

from __future__ import annotations

import logging
import math
import threading

import httpx
import pytest

from core.metrics import (
    LATENCY_BUCKETS,
    Counter,
    Gauge,
    Histogram,
    MetricsServer,
    Registry,
    parse,
)


def _registry() -> tuple[Registry, Counter, Gauge, Histogram]:
    registry = Registry()
    counter = registry.add(Counter("t_messages_total", "Messages", ["family"]))
    gauge = registry.add(Gauge("t_connected", "Connected"))
    histogram = registry.add(Histogram("t_latency_seconds", "Latency", LATENCY_BUCKETS))
    return registry, counter, gauge, histogram


def test_counters_gauges_and_histograms_keep_the_api_the_code_uses() -> None:
    _, counter, gauge, histogram = _registry()
    assert counter.value("native") == 0.0
    counter.inc("native")
    counter.inc("native", amount=2)
    counter.inc("tasmota")
    assert counter.value("native") == 3.0
    assert counter.total() == 4.0
    assert counter.items() == {("native",): 3.0, ("tasmota",): 1.0}
    plain = Counter("t_acked_total", "Acked")
    plain.inc(amount=5)
    assert plain.value() == plain.total() == 5.0
    gauge.set(1.0)
    assert gauge.value() == 1.0
    assert math.isnan(histogram.quantile(0.5))
    for value in (0.004, 0.3, 0.3, 4.0):
        histogram.observe(value)
    histogram.observe(100.0, count=2)
    assert histogram.count == 6
    assert histogram.quantile(0.5) == 0.3
    assert histogram.quantile(0.99) == 300.0


def test_counters_lose_no_increment_across_threads_nor_when_threads_end() -> None:
    """Counters count per thread without a lock (issue 15): each thread writes only its
    own dict; the scrape sums them, and an ended thread's counts stay in the total."""
    registry, counter, _, _ = _registry()
    per_thread = 20_000

    def work() -> None:
        for _ in range(per_thread):
            counter.inc("native")
            counter.inc("shelly", amount=0.5)

    for wave in range(3):  # later waves fold the ended threads of earlier ones
        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done = 4 * per_thread * (wave + 1)
        assert counter.value("native") == done
        assert counter.value("shelly") == done / 2
    assert len(counter._shards) <= 5  # the live threads (and this one), not every thread
    assert parse(registry.render())["t_messages"].value(family="native") == 12 * per_thread
    with pytest.raises(ValueError, match="labels"):
        counter.inc("native", "extra")
    with pytest.raises(ValueError, match="only go up"):
        counter.inc("native", amount=-1)


def test_a_batch_filed_at_once_lands_in_the_buckets_one_by_one_would() -> None:
    _, _, _, one_by_one = _registry()
    batch = Histogram("t_batch_seconds", "Latency", LATENCY_BUCKETS)
    values = [0.0, 0.005, 0.0051, 0.3, 0.30000001, 2.5, 299.9, 300.0, 1e6]
    for value in values:
        one_by_one.observe(value)
    batch.observe_many(values)
    batch.observe_many([])
    assert batch._cumulative() == one_by_one._cumulative()
    assert batch.count == len(values)


def test_the_exposition_is_what_prometheus_parses() -> None:
    registry, counter, gauge, histogram = _registry()
    counter.inc('we"ird\\fam\nily')  # label values are escaped by prometheus-client
    gauge.set(1.0)
    histogram.observe(0.3)
    families = parse(registry.render())
    assert families["t_messages"].type == "counter"
    assert families["t_messages"].value(family='we"ird\\fam\nily') == 1.0
    assert families["t_connected"].value() == 1.0
    latency = families["t_latency_seconds"]
    assert latency.type == "histogram"
    assert latency.value("t_latency_seconds_bucket", le="0.2") == 0.0
    assert latency.value("t_latency_seconds_bucket", le="0.3") == 1.0
    assert latency.value("t_latency_seconds_count") == 1.0
    # No _created series: they would double the exposition and nothing reads them.
    assert "_created" not in registry.render()


def test_a_read_gauge_is_read_at_scrape_time_and_a_failing_one_spoils_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = Registry()
    depth = [3]
    queued = registry.add(Gauge("t_queued", "Queued", read=lambda: depth[0]))
    broken = registry.add(Gauge("t_broken", "Broken"))
    broken.read_from(lambda: 1 / 0)
    counter = registry.add(Counter("t_total", "Other"))
    counter.inc()
    assert parse(registry.render())["t_queued"].value() == 3.0
    depth[0] = 7
    with caplog.at_level(logging.ERROR, logger="core.metrics"):
        families = parse(registry.render())
    assert queued.value() == families["t_queued"].value() == 7.0
    assert math.isnan(families["t_broken"].value() or 0.0)
    assert families["t"].value() == 1.0
    assert "t_broken: reading the value failed" in caplog.text


def test_one_name_is_registered_once() -> None:
    registry, _, _, _ = _registry()
    with pytest.raises(ValueError, match="t_connected is already registered"):
        registry.add(Gauge("t_connected", "again"))


def test_a_process_describes_itself() -> None:
    registry, _, _, _ = _registry()
    registry.describe_process("ingest")
    registry.describe_process("ingest")  # idempotent
    families = parse(registry.render())
    info = families["coldchain_process_info"]
    assert [labels["kind"] for _, labels, _ in info.samples] == ["ingest"]
    assert (families["process_start_time_seconds"].value() or 0.0) > 1.6e9


def test_the_listener_serves_the_registry_over_http() -> None:
    registry, counter, _, _ = _registry()
    server = MetricsServer(registry, "127.0.0.1", 0)
    server.start()
    try:
        assert server.port > 0
        counter.inc("native")
        response = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert parse(response.text)["t_messages"].value(family="native") == 1.0
    finally:
        server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=2)


def test_a_taken_port_is_an_error() -> None:
    first = MetricsServer(Registry(), "127.0.0.1", 0)
    first.start()
    try:
        with pytest.raises(OSError):
            MetricsServer(Registry(), "127.0.0.1", first.port).start()
    finally:
        first.stop()
