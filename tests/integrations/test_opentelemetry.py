"""pymysqlpool.opentelemetry: the semantic-convention instruments, read with
the SDK's InMemoryMetricReader after real borrows against the server."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from pymysqlpool import PoolTimeout
from pymysqlpool.opentelemetry import POOL_NAME, instrument, uninstrument
from support.waiting import wait_until

pytestmark = pytest.mark.server

STATE = "db.client.connection.state"


def read(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Instrument name -> its data points."""
    found: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    if data is None:  # nothing observed or recorded at all
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def point(points: list[Any], pool: str, **attributes: str) -> Any:
    wanted = {POOL_NAME: pool, **attributes}
    matches = [p for p in points if dict(p.attributes) == wanted]
    assert len(matches) == 1, (wanted, [dict(p.attributes) for p in points])
    return matches[0]


@pytest.fixture
def reader() -> Any:
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory])
    yield memory, provider
    provider.shutdown()


def test_instruments_follow_real_borrows(make_pool: Any, reader: Any) -> None:
    memory, provider = reader
    pool = make_pool(maxsize=2, size=2, pre_create_num=1)
    instrument(pool, meter_provider=provider)
    instrument(pool, meter_provider=provider)  # twice: still one set of events
    for _ in range(3):
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    held = [pool.get_conn(), pool.get_conn()]
    with pytest.raises(PoolTimeout):
        pool.get_conn(timeout=0.05)
    waiter = threading.Thread(target=lambda: pool.get_conn(timeout=10).close())
    waiter.start()
    try:
        assert wait_until(lambda: pool.get_stats()["waiting"] == 1)
        metrics = read(memory)
        stats = pool.get_stats()
    finally:
        for conn in held:
            conn.close()
        waiter.join(10)
    name = pool.name
    assert point(metrics["db.client.connection.count"], name, **{STATE: "used"}).value == 2 == stats["borrowed"]
    assert point(metrics["db.client.connection.count"], name, **{STATE: "idle"}).value == 0 == stats["idle"]
    assert point(metrics["db.client.connection.max"], name).value == 2
    assert point(metrics["db.client.connection.idle.max"], name).value == 2
    assert point(metrics["db.client.connection.idle.min"], name).value == 1
    assert point(metrics["db.client.connection.pending_requests"], name).value == 1
    assert point(metrics["db.client.connection.timeouts"], name).value == 1
    # Histograms: one observation per borrow served, per return, per connection opened.
    wait = point(metrics["db.client.connection.wait_time"], name)
    use = point(metrics["db.client.connection.use_time"], name)
    create = point(metrics["db.client.connection.create_time"], name)
    assert wait.count == 5 and use.count == 3
    # The pre-created connection was opened before instrument() attached the events.
    assert create.count == stats["connections_made"] - 1 == 1
    assert 0 < create.sum < 60 and 0 <= wait.sum < 60 and 0 < use.sum < 60
    assert use.sum == pytest.approx(stats["use_ms"] / 1000, abs=0.05)  # the same borrows, timed by the pool


def test_two_pools_and_uninstrument(make_pool: Any, reader: Any) -> None:
    memory, provider = reader
    first, second = make_pool(), make_pool()
    instrument(first, meter_provider=provider)
    instrument(second, meter_provider=provider)
    with pytest.raises(ValueError, match="distinct name"):
        instrument(make_pool(pool_name=first.name), meter_provider=provider)
    with first.connection(), second.connection():
        pass
    metrics = read(memory)
    assert point(metrics["db.client.connection.use_time"], first.name).count == 1
    assert point(metrics["db.client.connection.use_time"], second.name).count == 1
    assert uninstrument(first, meter_provider=provider) is True
    assert uninstrument(first, meter_provider=provider) is False
    assert first._events.objects == ()  # detached: its borrows and returns call nothing
    assert len(second._events.objects) == 1
    with first.connection(), second.connection():
        pass
    metrics = read(memory)
    # The detached pool records nothing more and is no longer observed.
    assert point(metrics["db.client.connection.use_time"], first.name).count == 1
    assert point(metrics["db.client.connection.use_time"], second.name).count == 2
    assert [p for p in metrics["db.client.connection.max"] if dict(p.attributes)[POOL_NAME] == first.name] == []


def test_closed_pool_drops_out(make_pool: Any, reader: Any) -> None:
    memory, provider = reader
    pool, other = make_pool(), make_pool()
    instrument(pool, meter_provider=provider)
    instrument(other, meter_provider=provider)
    assert {dict(p.attributes)[POOL_NAME] for p in read(memory)["db.client.connection.max"]} == {
        pool.name,
        other.name,
    }
    pool.close()
    assert all(dict(p.attributes)[POOL_NAME] != pool.name for p in read(memory).get("db.client.connection.max", []))


def test_a_cluster_is_reported_per_node(server_kwargs: dict, shell: str, reader: Any) -> None:
    from support.shells import cluster_type

    memory, provider = reader
    server = {k: v for k, v in server_kwargs.items() if k not in ("host", "port")}
    hosts = [(server_kwargs["host"], server_kwargs["port"]), ("localhost", server_kwargs["port"])]
    with cluster_type(shell)(hosts=hosts, pool_name="otel", maxsize=3, probe_interval=0.1, **server) as cluster:
        assert cluster.wait_ready(10)
        real = cluster._pool if shell == "asyncio" else cluster  # the AsyncClusterPool behind the facade
        instrument(real, meter_provider=provider)
        cluster.release(cluster.get_conn())  # the first node writes; the second is the same server, left out
        metrics = read(memory)
        first = f"otel/{hosts[0][0]}:{hosts[0][1]}"
        second = f"otel/localhost:{hosts[1][1]}"
        assert point(metrics["db.client.connection.max"], first).value == 3
        assert point(metrics["db.client.connection.max"], second).value == 3
        assert point(metrics["db.client.connection.wait_time"], first).count == 1
        assert uninstrument(real, meter_provider=provider)
        assert not uninstrument(real, meter_provider=provider)
