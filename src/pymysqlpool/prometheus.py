"""Prometheus metrics for pools: ``pip install 'pymysql-pool[prometheus]'``.

::

    from pymysqlpool.prometheus import register
    register(pool)  # on prometheus_client's default REGISTRY

Every key of ``pool.get_stats()`` becomes a metric ``pymysqlpool_<key>``
with a ``pool`` label holding the pool's name: gauges as gauges, counters as
counters (exposed with the ``_total`` suffix, e.g.
``pymysqlpool_borrows_total``) but for ``use_max_ms``, a maximum that
``pop_stats()`` resets: a gauge. Values are read when Prometheus scrapes, under
the pool's lock, so each pool's numbers are one consistent snapshot.

Three histograms come from the pool's events, attached when the pool is
registered (an unregistered pool pays nothing): ``pymysqlpool_wait_seconds``
(how long each borrow took, waiting included), ``pymysqlpool_create_seconds``
(how long each new connection took to open) and ``pymysqlpool_use_seconds``
(borrow to return).

Pools are held by weak reference: registering a pool does not keep it alive,
and a pool that is garbage-collected drops out of the scrape.
"""

from __future__ import annotations

import bisect
import threading
import weakref
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

try:
    from prometheus_client.core import (
        REGISTRY,
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector, CollectorRegistry
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the package
    raise ImportError(
        "pymysqlpool.prometheus needs prometheus_client: install the extra with pip install 'pymysql-pool[prometheus]'"
    ) from exc

from ._clusterbase import SteeredCluster
from ._core import PoolCore
from ._reporting import ReportedPools
from .stats import COUNTERS, GAUGES, MAXIMA

__all__ = ["PREFIX", "PoolCollector", "register", "unregister"]

PREFIX = "pymysqlpool_"
# Seconds: from a clean borrow (µs) to a long wait or a slow dial.
BUCKETS = (0.00001, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0)
HISTOGRAMS: Dict[str, str] = {
    "wait_seconds": "time each borrow took, waiting for a connection included",
    "create_seconds": "time each new server connection took to open",
    "use_seconds": "time from borrow to return",
}


class Histogram:
    """Cumulative bucket counts and sum of observations, safe across threads."""

    __slots__ = ("_counts", "_lock", "_sum")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self._sum = 0.0

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(BUCKETS, value)
        with self._lock:
            self._counts[index] += 1
            self._sum += value

    def snapshot(self) -> Tuple[List[Tuple[str, float]], float]:
        """Cumulative ``(le, count)`` pairs ending with ``+Inf``, and the sum."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        buckets, running = [], 0
        for bound, count in zip([*map(str, BUCKETS), "+Inf"], counts):
            running += count
            buckets.append((bound, float(running)))
        return buckets, total


class PoolEvents:
    """The events object a registered pool reports its timings to."""

    def __init__(self) -> None:
        self.histograms = {name: Histogram() for name in HISTOGRAMS}
        wait, create, use = (self.histograms[key].observe for key in ("wait_seconds", "create_seconds", "use_seconds"))
        self.on_checkout = lambda raw, waited: wait(waited)
        self.on_connect = lambda raw, seconds: create(seconds)
        self.on_checkin = lambda raw, used: use(used)


class PoolCollector(Collector):
    """A prometheus_client collector reporting the stats of one or more pools.

    Pool names become the ``pool`` label, so they must differ: adding a pool
    whose name is already reported raises ``ValueError``.
    """

    def __init__(self, *pools: PoolCore) -> None:
        self._reported: ReportedPools[PoolEvents] = ReportedPools(lambda pool: PoolEvents())
        for pool in pools:
            self.add(pool)

    def pools(self) -> List[PoolCore]:
        """The pools reported now (alive and open)."""
        return self._reported.pools()

    def add(self, pool: PoolCore) -> None:
        """Report ``pool`` too (no-op if it is already reported)."""
        self._reported.add(pool)

    def remove(self, pool: PoolCore) -> bool:
        """Stop reporting ``pool``; True if it was reported."""
        return self._reported.remove(pool)

    def describe(self) -> Iterable[Metric]:
        # The names, without reading any pool: lets a registry check for
        # clashes at register() time without calling collect().
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        gauges, counters, histograms = self._families_by_kind()
        for pool in self.pools():
            stats = pool.get_stats()
            label = [pool.name]
            for key, family in gauges.items():
                if key in stats:
                    family.add_metric(label, float(stats[key]))
            for key, counter in counters.items():
                if key in stats:
                    counter.add_metric(label, float(stats[key]))
            events = self._reported.events(pool)
            if events is not None:
                for key, histogram in histograms.items():
                    buckets, total = events.histograms[key].snapshot()
                    histogram.add_metric(label, buckets, total)
        yield from gauges.values()
        yield from counters.values()
        yield from histograms.values()

    def _families(self) -> Iterator[Metric]:
        for kind in self._families_by_kind():
            yield from kind.values()

    @staticmethod
    def _families_by_kind() -> Tuple[
        Dict[str, GaugeMetricFamily], Dict[str, CounterMetricFamily], Dict[str, HistogramMetricFamily]
    ]:
        gauges = {
            key: GaugeMetricFamily(PREFIX + key, doc, labels=["pool"])
            for key, doc in (*GAUGES.items(), *((key, COUNTERS[key]) for key in sorted(MAXIMA)))
        }
        counters = {
            key: CounterMetricFamily(PREFIX + key, doc, labels=["pool"])
            for key, doc in COUNTERS.items()
            if key not in MAXIMA
        }
        histograms = {key: HistogramMetricFamily(PREFIX + key, doc, labels=["pool"]) for key, doc in HISTOGRAMS.items()}
        return gauges, counters, histograms


# One collector per registry: several collectors would each report the same
# metric names, which a registry rejects as duplicated time series.
_registered: weakref.WeakKeyDictionary[CollectorRegistry, PoolCollector] = weakref.WeakKeyDictionary()
_registered_lock = threading.Lock()


def register(pool: Union[PoolCore, SteeredCluster[Any]], registry: Optional[CollectorRegistry] = None) -> PoolCollector:
    """Report ``pool``'s stats on ``registry`` (default: prometheus_client's
    ``REGISTRY``). Call it once per pool; all pools registered on one registry
    share one collector, which is returned. A ``ClusterPool`` or
    ``AsyncClusterPool`` is reported per node: its node pools are named
    ``<cluster>/<host>:<port>``, the ``pool`` label."""
    target = REGISTRY if registry is None else registry
    if isinstance(pool, SteeredCluster):
        nodes = pool.node_pools()
        for node in nodes[1:]:
            register(node, target)
        return register(nodes[0], target)
    with _registered_lock:
        collector = _registered.get(target)
        if collector is None:
            collector = PoolCollector(pool)
            target.register(collector)
            _registered[target] = collector
            return collector
    collector.add(pool)
    return collector


def unregister(pool: Union[PoolCore, SteeredCluster[Any]], registry: Optional[CollectorRegistry] = None) -> bool:
    """Stop reporting ``pool`` (every node of a cluster) on ``registry``;
    True if it was reported there."""
    target = REGISTRY if registry is None else registry
    if isinstance(pool, SteeredCluster):
        return any([unregister(node_pool, target) for node_pool in pool.node_pools()])
    with _registered_lock:
        collector = _registered.get(target)
    return collector is not None and collector.remove(pool)
