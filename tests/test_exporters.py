"""Both metric exporters report every key of get_stats(), with its value: a
stat added to the pool cannot be left out of Prometheus or OpenTelemetry
again (the kill stats were missing from OpenTelemetry). On the fake driver:
no server needed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, InMemoryMetricReader, Sum
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fast.fakes import FakeServer
from pymysqlpool import ConnectionPool, PoolTimeout
from pymysqlpool.opentelemetry import POOL_NAME, STATS_INSTRUMENTS, instrument
from pymysqlpool.prometheus import register
from pymysqlpool.stats import COUNTERS, GAUGES, MAXIMA

STATE = "db.client.connection.state"


@pytest.fixture
def pool() -> Iterator[ConnectionPool]:
    """A pool with a little of everything counted: borrows, a rollback, a timeout, one connection lent."""
    made = ConnectionPool(connection_factory=FakeServer(), name="exported", maxsize=2, autocommit=True)
    try:
        yield made
    finally:
        made.close()


def exercise(pool: ConnectionPool) -> Any:
    """Borrows, a rollback, a timeout; returns a connection still lent (close it)."""
    for _ in range(3):
        with pool.connection():
            pass
    with pytest.raises(RuntimeError), pool.connection() as conn:
        conn.begin()
        raise RuntimeError("rolled back by the pool")
    held = [pool.get_conn(), pool.get_conn()]
    with pytest.raises(PoolTimeout):
        pool.get_conn(timeout=0)
    held[1].close()
    return held[0]


def test_get_stats_has_exactly_the_documented_keys(pool: ConnectionPool) -> None:
    # The exporters iterate GAUGES and COUNTERS: a key only in get_stats() would be dropped.
    assert set(pool.get_stats()) == set(GAUGES) | set(COUNTERS)


def test_prometheus_exports_every_stat(pool: ConnectionPool) -> None:
    registry = CollectorRegistry()
    register(pool, registry)
    held = exercise(pool)
    try:
        text = generate_latest(registry).decode()
        stats = pool.get_stats()
    finally:
        held.close()
    scraped = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("pool") == "exported"
    }
    assert stats["rollbacks_on_return"] == 1 and stats["borrowed"] == 1 and stats["borrow_timeouts"] == 1
    for key, value in stats.items():
        name = f"pymysqlpool_{key}" + ("_total" if key in COUNTERS and key not in MAXIMA else "")
        assert scraped.get(name) == pytest.approx(float(value)), key


def test_opentelemetry_exports_every_stat(pool: ConnectionPool) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        instrument(pool, meter_provider=provider)
        held = exercise(pool)
        try:
            data = reader.get_metrics_data()
            stats = pool.get_stats()
        finally:
            held.close()
    finally:
        provider.shutdown()
    assert data is not None
    metrics = {m.name: m.data for r in data.resource_metrics for sc in r.scope_metrics for m in sc.metrics}
    assert set(STATS_INSTRUMENTS) == set(stats)
    for key, value in stats.items():
        name = STATS_INSTRUMENTS[key]
        attributes = {POOL_NAME: "exported"}
        if name == "db.client.connection.count":
            attributes[STATE] = "idle" if key == "idle" else "used"
        found = (
            [p.value for p in metrics[name].data_points if dict(p.attributes) == attributes] if name in metrics else []
        )
        assert found == [pytest.approx(value)], (key, name, found)
    # Counters are monotonic sums, gauges not; a maximum is a gauge (pop_stats() lowers it).
    kills, killing, use_max = (metrics[STATS_INSTRUMENTS[key]] for key in ("kills", "killing", "use_max_ms"))
    assert isinstance(kills, Sum) and kills.is_monotonic
    assert isinstance(killing, Sum) and not killing.is_monotonic
    assert isinstance(use_max, Gauge)
