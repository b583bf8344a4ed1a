"""Prometheus metrics for pools: ``pip install 'pymysqlpool[prometheus]'``.

::

    from pymysqlpool.prometheus import register
    register(pool)  # on prometheus_client's default REGISTRY

Every key of ``pool.get_stats()`` becomes a metric ``pymysqlpool_<key>``
with a ``pool`` label holding the pool's name: gauges as gauges, counters as
counters (exposed with the ``_total`` suffix, e.g.
``pymysqlpool_borrows_total``). Values are read when Prometheus scrapes, under
the pool's lock, so each pool's numbers are one consistent snapshot.

Pools are held by weak reference: registering a pool does not keep it alive,
and a pool that is garbage-collected drops out of the scrape.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, Optional, Tuple, Union

try:
    from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector, CollectorRegistry
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the package
    raise ImportError(
        "pymysqlpool.prometheus needs prometheus_client: install the extra with pip install 'pymysqlpool[prometheus]'"
    ) from exc

from .pool import ConnectionPool
from .stats import COUNTERS, GAUGES

if TYPE_CHECKING:
    from .cluster import ClusterPool

__all__ = ["PREFIX", "PoolCollector", "register", "unregister"]

PREFIX = "pymysqlpool_"


class PoolCollector(Collector):
    """A prometheus_client collector reporting the stats of one or more pools.

    Pool names become the ``pool`` label, so they must differ: adding a pool
    whose name is already reported raises ``ValueError``.
    """

    def __init__(self, *pools: ConnectionPool) -> None:
        self._lock = threading.Lock()
        self._pools: List[weakref.ref[ConnectionPool]] = []
        for pool in pools:
            self.add(pool)

    def pools(self) -> List[ConnectionPool]:
        """The pools reported now (those still alive)."""
        with self._lock:
            alive = [p for p in (ref() for ref in self._pools) if p is not None]
            self._pools = [weakref.ref(p) for p in alive]
            return alive

    def add(self, pool: ConnectionPool) -> None:
        """Report ``pool`` too (no-op if it is already reported)."""
        current = self.pools()
        if any(p is pool for p in current):
            return
        if any(p.name == pool.name for p in current):
            raise ValueError(f"a pool named {pool.name!r} is already reported; give each pool a distinct name")
        with self._lock:
            self._pools.append(weakref.ref(pool))

    def remove(self, pool: ConnectionPool) -> bool:
        """Stop reporting ``pool``; True if it was reported."""
        with self._lock:
            before = len(self._pools)
            self._pools = [ref for ref in self._pools if ref() is not None and ref() is not pool]
            return len(self._pools) != before

    def describe(self) -> Iterable[Metric]:
        # The names, without reading any pool: lets a registry check for
        # clashes at register() time without calling collect().
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        gauges, counters = self._families_by_kind()
        for pool in self.pools():
            stats = pool.get_stats()
            label = [pool.name]
            for key, family in gauges.items():
                if key in stats:
                    family.add_metric(label, float(stats[key]))
            for key, counter in counters.items():
                if key in stats:
                    counter.add_metric(label, float(stats[key]))
        yield from gauges.values()
        yield from counters.values()

    def _families(self) -> Iterator[Metric]:
        gauges, counters = self._families_by_kind()
        yield from gauges.values()
        yield from counters.values()

    @staticmethod
    def _families_by_kind() -> Tuple[Dict[str, GaugeMetricFamily], Dict[str, CounterMetricFamily]]:
        gauges = {key: GaugeMetricFamily(PREFIX + key, doc, labels=["pool"]) for key, doc in GAUGES.items()}
        counters = {key: CounterMetricFamily(PREFIX + key, doc, labels=["pool"]) for key, doc in COUNTERS.items()}
        return gauges, counters


# One collector per registry: several collectors would each report the same
# metric names, which a registry rejects as duplicated time series.
_registered: weakref.WeakKeyDictionary[CollectorRegistry, PoolCollector] = weakref.WeakKeyDictionary()
_registered_lock = threading.Lock()


def register(pool: Union[ConnectionPool, ClusterPool], registry: Optional[CollectorRegistry] = None) -> PoolCollector:
    """Report ``pool``'s stats on ``registry`` (default: prometheus_client's
    ``REGISTRY``). Call it once per pool; all pools registered on one registry
    share one collector, which is returned. A ``ClusterPool`` is reported per
    node: its node pools are named ``<cluster>/<host>:<port>``, the ``pool`` label."""
    target = REGISTRY if registry is None else registry
    if not isinstance(pool, ConnectionPool):
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


def unregister(pool: Union[ConnectionPool, ClusterPool], registry: Optional[CollectorRegistry] = None) -> bool:
    """Stop reporting ``pool`` (every node of a ``ClusterPool``) on ``registry``;
    True if it was reported there."""
    target = REGISTRY if registry is None else registry
    if not isinstance(pool, ConnectionPool):
        return any([unregister(node, target) for node in pool.node_pools()])
    with _registered_lock:
        collector = _registered.get(target)
    return collector is not None and collector.remove(pool)
