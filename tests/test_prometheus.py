"""pymysqlpool.prometheus: the collector's scrape matches get_stats()."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pymysqlpool import ConnectionPool
from pymysqlpool.prometheus import PoolCollector, register, unregister
from pymysqlpool.stats import COUNTERS, GAUGES, MAXIMA
from support.shells import pool_type

pytestmark = pytest.mark.server


@pytest.fixture
def make_pool(live_server: dict, shell: str) -> Iterator[Any]:
    pools: list = []
    kind = pool_type(shell)  # the asyncio pool reports the same metrics

    def make(name: str, **kwargs: Any) -> ConnectionPool:
        pool = kind(name=name, maxsize=4, **live_server, **kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def scrape(registry: CollectorRegistry) -> dict:
    """{(sample name, pool label): value} from the text exposition format."""
    found: dict = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            found[(sample.name, sample.labels["pool"])] = sample.value
    return found


def metric_name(key: str) -> str:
    return f"pymysqlpool_{key}" + ("_total" if key in COUNTERS and key not in MAXIMA else "")


def test_two_pools_scrape_matches_get_stats(make_pool: Any) -> None:
    registry = CollectorRegistry()
    orders, users = make_pool("orders"), make_pool("users", pre_create_num=1)
    register(orders, registry)
    register(users, registry)
    for _ in range(3):
        with orders.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    held = orders.get_conn()  # one borrowed at scrape time
    with pytest.raises(RuntimeError), users.connection() as conn:
        conn.begin()
        raise RuntimeError("rolled back by the pool")
    try:
        scraped = scrape(registry)
        expected = {"orders": orders.get_stats(), "users": users.get_stats()}
    finally:
        held.close()
    assert expected["orders"]["borrows"] == 4 and expected["orders"]["borrowed"] == 1
    assert expected["users"]["rollbacks_on_return"] == 1
    for pool, stats in expected.items():
        assert set(stats) == set(GAUGES) | set(COUNTERS)
        for key, value in stats.items():
            assert scraped[(metric_name(key), pool)] == pytest.approx(float(value)), (pool, key)
    assert {label for _, label in scraped} == {"orders", "users"}


def test_metric_types_and_help(make_pool: Any) -> None:
    registry = CollectorRegistry()
    register(make_pool("typed"), registry)
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    for key, meaning in GAUGES.items():
        assert families[f"pymysqlpool_{key}"].type == "gauge"
        assert families[f"pymysqlpool_{key}"].documentation == meaning
    for key in COUNTERS:
        family = families.get(f"pymysqlpool_{key}") or families[f"pymysqlpool_{key}_total"]
        # A maximum (reset by pop_stats) is no running total: a gauge.
        assert family.type == ("gauge" if key in MAXIMA else "counter"), key
    assert families["pymysqlpool_use_max_ms"].type == "gauge"


def test_collector_with_several_pools(make_pool: Any) -> None:
    a, b = make_pool("a"), make_pool("b")
    registry = CollectorRegistry()
    collector = PoolCollector(a, b)
    registry.register(collector)
    with a.connection():
        pass
    scraped = scrape(registry)
    assert scraped[("pymysqlpool_borrows_total", "a")] == 1
    assert scraped[("pymysqlpool_borrows_total", "b")] == 0
    assert collector.remove(b) is True
    assert {label for _, label in scrape(registry)} == {"a"}


def test_histograms_from_the_pool_events(make_pool: Any) -> None:
    registry = CollectorRegistry()
    pool = make_pool("timed")
    register(pool, registry)
    for _ in range(3):
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    held = pool.get_conn()
    text = generate_latest(registry).decode()
    held.close()
    samples = {
        (s.name, s.labels.get("le")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("pool") == "timed"
    }
    stats = pool.get_stats()
    assert samples[("pymysqlpool_wait_seconds_count", None)] == 4  # every borrow served
    assert samples[("pymysqlpool_use_seconds_count", None)] == 3  # every return so far
    assert samples[("pymysqlpool_create_seconds_count", None)] == stats["connections_made"] == 1
    assert samples[("pymysqlpool_wait_seconds_bucket", "+Inf")] == 4
    assert samples[("pymysqlpool_create_seconds_sum", None)] == pytest.approx(
        stats["connect_ms"] / 1000, rel=0.5, abs=0.05
    )
    buckets = [
        v
        for (name, le), v in sorted(samples.items(), key=lambda kv: float(kv[0][1] or 0))
        if name == "pymysqlpool_use_seconds_bucket"
    ]
    assert buckets == sorted(buckets) and buckets[-1] == 3  # cumulative
    assert len(pool._events.objects) == 1
    assert unregister(pool, registry) is True
    assert pool._events.objects == ()  # detached: an unregistered pool pays nothing


def test_duplicate_pool_names_are_refused(make_pool: Any) -> None:
    registry = CollectorRegistry()
    first = make_pool("same")
    register(first, registry)
    register(first, registry)  # the same pool again: no-op
    with pytest.raises(ValueError, match="same"):
        register(make_pool("same"), registry)


def test_unregister_and_garbage_collected_pools(live_server: dict, make_pool: Any) -> None:
    registry = CollectorRegistry()
    kept = make_pool("kept")
    register(kept, registry)
    dropped = ConnectionPool(name="dropped", **live_server)
    register(dropped, registry)
    assert {label for _, label in scrape(registry)} == {"kept", "dropped"}
    dropped.close()
    del dropped
    gc.collect()
    assert {label for _, label in scrape(registry)} == {"kept"}  # a weak reference only
    assert unregister(kept, registry) is True
    assert scrape(registry) == {}
    assert unregister(kept, registry) is False


def test_registries_are_independent(make_pool: Any) -> None:
    one, two = CollectorRegistry(), CollectorRegistry()
    register(make_pool("p1"), one)
    register(make_pool("p2"), two)
    assert {label for _, label in scrape(one)} == {"p1"}
    assert {label for _, label in scrape(two)} == {"p2"}


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    from pymysqlpool.prometheus import BUCKETS, Histogram

    histogram = Histogram()
    for value in (0.001, 0.0011, 100.0):  # on a bound, just above it, beyond the last
        histogram.observe(value)
    buckets, total = histogram.snapshot()
    counts = dict(buckets)
    assert [le for le, _ in buckets] == [*map(str, BUCKETS), "+Inf"]
    assert counts["0.0005"] == 0 and counts["0.001"] == 1  # le means "less than or equal"
    assert counts["0.005"] == 2 and counts["30.0"] == 2 and counts["+Inf"] == 3
    assert total == pytest.approx(100.0021)


def test_cluster_pool_is_reported_per_node(live_server: dict, shell: str) -> None:
    from support.shells import cluster_type

    server = {k: v for k, v in live_server.items() if k not in ("host", "port")}
    hosts = [(live_server["host"], live_server["port"]), ("localhost", live_server["port"])]
    registry = CollectorRegistry()
    with cluster_type(shell)(hosts=hosts, pool_name="shop", maxsize=2, probe_interval=0.1, **server) as cluster:
        assert cluster.wait_ready(10)  # the second address is the same server: left out, the first writes
        cluster.release(cluster.get_conn())  # one borrow on the first node only
        real = cluster._pool if shell == "asyncio" else cluster  # the AsyncClusterPool behind the facade
        register(real, registry)
        found = scrape(registry)
        first = f"shop/{hosts[0][0]}:{hosts[0][1]}"
        second = f"shop/localhost:{hosts[1][1]}"
        assert found[(metric_name("borrows"), first)] == 1
        assert found[(metric_name("borrows"), second)] == 0
        assert found[(metric_name("pool_max"), second)] == 2
        assert unregister(real, registry)
        assert not any(label in (first, second) for _, label in scrape(registry))
