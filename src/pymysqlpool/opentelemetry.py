"""OpenTelemetry metrics for pools: ``pip install 'pymysql-pool[opentelemetry]'``.

::

    from pymysqlpool.opentelemetry import instrument
    instrument(pool)                       # the global MeterProvider, or meter_provider=...

The instruments of OpenTelemetry's semantic conventions for database client
connection pools, each with the attribute ``db.client.connection.pool.name``
(the pool's name):

========================================== ================= ===============================================
instrument                                 kind              value
========================================== ================= ===============================================
``db.client.connection.count``             UpDownCounter     connections by ``db.client.connection.state``:
                                                             ``idle`` or ``used`` (borrowed)
``db.client.connection.idle.max``          UpDownCounter     ``size``: idle connections kept indefinitely
``db.client.connection.idle.min``          UpDownCounter     ``pre_create_num``: connections always open
``db.client.connection.max``               UpDownCounter     ``maxsize``
``db.client.connection.pending_requests``  UpDownCounter     borrowers waiting now
``db.client.connection.timeouts``          Counter           borrows that raised PoolTimeout
``db.client.connection.create_time``       Histogram (s)     time to open a connection
``db.client.connection.wait_time``         Histogram (s)     time a borrow took (waiting included)
``db.client.connection.use_time``          Histogram (s)     time from borrow to return
========================================== ================= ===============================================

Every other key of ``pool.get_stats()`` is observed as ``pymysqlpool.pool.<key>``
(same attribute): gauges (``open``, ``killing``, ...) as UpDownCounters,
counters (``kills``, ``rollbacks_on_return``, ...) as Counters, ``use_max_ms``
(a maximum that ``pop_stats()`` resets) as a Gauge. ``STATS_INSTRUMENTS``
maps each key to the instrument that reports it.

The gauges and counters are observed from ``pool.get_stats()`` when the
reader collects. The histograms and the timeout counter are fed by the pool's
events, which ``instrument()`` attaches: a pool that is not instrumented pays
nothing. Pools are held by weak reference; ``uninstrument(pool)`` detaches one.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Dict, Iterable, Optional, Union

try:
    from opentelemetry import metrics
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the package
    raise ImportError(
        "pymysqlpool.opentelemetry needs opentelemetry-api: install the extra with "
        "pip install 'pymysql-pool[opentelemetry]'"
    ) from exc

from ._clusterbase import SteeredCluster
from ._reporting import ReportedPools
from ._version import __version__
from .stats import COUNTERS, GAUGES, MAXIMA

if TYPE_CHECKING:
    from ._core import PoolCore

__all__ = ["POOL_NAME", "STATS_INSTRUMENTS", "instrument", "uninstrument"]

POOL_NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"
# The stats keys a semantic-convention instrument reports; the rest get one of their own.
_CONVENTION = {
    "idle": "db.client.connection.count",
    "borrowed": "db.client.connection.count",
    "pool_size": "db.client.connection.idle.max",
    "pool_min": "db.client.connection.idle.min",
    "pool_max": "db.client.connection.max",
    "waiting": "db.client.connection.pending_requests",
    "borrow_timeouts": "db.client.connection.timeouts",
}
#: Each key of ``get_stats()`` -> the name of the instrument that reports it.
STATS_INSTRUMENTS: Dict[str, str] = {
    key: _CONVENTION.get(key, f"pymysqlpool.pool.{key}") for key in (*GAUGES, *COUNTERS)
}
# Seconds: from a clean borrow (µs) to a long wait or a slow dial.
_BUCKETS = (0.00001, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0)


class _PoolEvents:
    """The events object attached to one pool: records into the histograms."""

    def __init__(self, meters: _Meters, name: str) -> None:
        attributes = {POOL_NAME: name}
        create, wait, use, timeouts = meters.create_time, meters.wait_time, meters.use_time, meters.timeouts
        # Bound once here so each event is one call with no lookups.
        self.on_connect = lambda raw, seconds: create.record(seconds, attributes)
        self.on_checkout = lambda raw, waited: wait.record(waited, attributes)
        self.on_checkin = lambda raw, used: use.record(used, attributes)
        self.on_timeout = lambda waited: timeouts.add(1, attributes)


class _Meters:
    """The instruments on one MeterProvider, shared by every pool instrumented there
    (an SDK keeps the first instrument of a name: a second one would be dropped)."""

    def __init__(self, provider: Optional[MeterProvider]) -> None:
        meter = metrics.get_meter("pymysqlpool", __version__, meter_provider=provider)
        self.reported: ReportedPools[_PoolEvents] = ReportedPools(lambda pool: _PoolEvents(self, pool.name))
        gauge = meter.create_observable_up_down_counter
        gauge(
            "db.client.connection.count",
            [self._count],
            "{connection}",
            "The number of connections that are currently in state described by the state attribute.",
        )
        for suffix, key, text in (
            ("idle.max", "pool_size", "The maximum number of idle open connections allowed."),
            ("idle.min", "pool_min", "The minimum number of idle open connections allowed."),
            ("max", "pool_max", "The maximum number of open connections allowed."),
            ("pending_requests", "waiting", "The number of current pending requests for an open connection."),
        ):
            unit = "{request}" if suffix == "pending_requests" else "{connection}"
            gauge(f"db.client.connection.{suffix}", [self._observer(key)], unit, text)
        self.timeouts = meter.create_counter(
            "db.client.connection.timeouts",
            "{timeout}",
            "The number of connection timeouts that have occurred trying to obtain a connection from the pool.",
        )
        kinds: Dict[str, Any] = {
            "gauge": meter.create_observable_up_down_counter,
            "maximum": meter.create_observable_gauge,
            "counter": meter.create_observable_counter,
        }
        for key, text in (*GAUGES.items(), *COUNTERS.items()):
            if key not in _CONVENTION:
                kind = "gauge" if key in GAUGES else "maximum" if key in MAXIMA else "counter"
                unit = "ms" if key.endswith("_ms") else "1"
                kinds[kind](STATS_INSTRUMENTS[key], [self._observer(key)], unit, text)
        histogram = meter.create_histogram
        self.create_time = histogram(
            "db.client.connection.create_time",
            "s",
            "The time it took to create a new connection.",
            explicit_bucket_boundaries_advisory=_BUCKETS,
        )
        self.wait_time = histogram(
            "db.client.connection.wait_time",
            "s",
            "The time it took to obtain an open connection from the pool.",
            explicit_bucket_boundaries_advisory=_BUCKETS,
        )
        self.use_time = histogram(
            "db.client.connection.use_time",
            "s",
            "The time between borrowing a connection and returning it to the pool.",
            explicit_bucket_boundaries_advisory=_BUCKETS,
        )

    def _stats(self) -> Iterable[tuple[Dict[str, Any], Dict[str, str]]]:
        for pool in self.reported.pools():
            yield pool.get_stats(), {POOL_NAME: pool.name}

    def _count(self, options: CallbackOptions) -> Iterable[Observation]:
        for stats, attributes in self._stats():
            yield Observation(stats["idle"], {**attributes, STATE: "idle"})
            yield Observation(stats["borrowed"], {**attributes, STATE: "used"})

    def _observer(self, key: str) -> Any:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            for stats, attributes in self._stats():
                yield Observation(stats[key], attributes)

        return observe


_meters: Dict[int, tuple[Any, _Meters]] = {}  # id(provider) -> (provider, its instruments)
_meters_lock = threading.Lock()


def _for_provider(provider: Optional[MeterProvider]) -> _Meters:
    target = provider if provider is not None else metrics.get_meter_provider()
    with _meters_lock:
        found = _meters.get(id(target))
        if found is None or found[0] is not target:
            found = (target, _Meters(target))
            _meters[id(target)] = found
        return found[1]


def instrument(pool: Union[PoolCore, SteeredCluster[Any]], meter_provider: Optional[MeterProvider] = None) -> None:
    """Report ``pool`` on ``meter_provider`` (default: the global one).

    Instrumenting the same pool twice is a no-op; two pools with the same name
    on one provider raise ``ValueError`` (the name is the pool's attribute).
    A ``ClusterPool`` or ``AsyncClusterPool`` is reported per node, each node
    pool under its name ``<cluster>/<host>:<port>``.
    """
    if isinstance(pool, SteeredCluster):
        for node_pool in pool.node_pools():
            instrument(node_pool, meter_provider)
        return
    _for_provider(meter_provider).reported.add(pool)


def uninstrument(pool: Union[PoolCore, SteeredCluster[Any]], meter_provider: Optional[MeterProvider] = None) -> bool:
    """Stop reporting ``pool`` (every node of a cluster); True if it was reported on that provider."""
    if isinstance(pool, SteeredCluster):
        return any([uninstrument(node_pool, meter_provider) for node_pool in pool.node_pools()])
    return _for_provider(meter_provider).reported.remove(pool)
