"""The pools one metrics exporter reports, with the events object it attached
to each: shared by the Prometheus collector and the OpenTelemetry meters.

Pools are held by weak reference (reporting a pool does not keep it alive)
and must have distinct names, since the name is what tells them apart.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Callable, Generic, List, Optional, TypeVar

if TYPE_CHECKING:
    from ._core import PoolCore

__all__ = ["ReportedPools"]

E = TypeVar("E")


class ReportedPools(Generic[E]):
    def __init__(self, make_events: Callable[[PoolCore], E]) -> None:
        self._make_events = make_events
        self._lock = threading.Lock()
        self._pools: List[weakref.ref[PoolCore]] = []
        self._events: weakref.WeakKeyDictionary[PoolCore, E] = weakref.WeakKeyDictionary()

    def pools(self) -> List[PoolCore]:
        """The pools reported now: alive and not closed."""
        with self._lock:
            alive = [p for p in (ref() for ref in self._pools) if p is not None and not p.closed]
            self._pools = [weakref.ref(p) for p in alive]
            return alive

    def add(self, pool: PoolCore) -> None:
        """Report ``pool`` too (no-op if it is already reported)."""
        current = self.pools()
        if any(p is pool for p in current):
            return
        if any(p.name == pool.name for p in current):
            raise ValueError(f"a pool named {pool.name!r} is already reported; give each pool a distinct name")
        events = self._make_events(pool)
        pool.add_events(events)
        with self._lock:
            self._pools.append(weakref.ref(pool))
            self._events[pool] = events

    def remove(self, pool: PoolCore) -> bool:
        """Stop reporting ``pool`` and detach its events; True if it was reported."""
        with self._lock:
            self._pools = [ref for ref in self._pools if ref() is not None and ref() is not pool]
            events = self._events.pop(pool, None)
        if events is None:
            return False
        pool.remove_events(events)
        return True

    def events(self, pool: PoolCore) -> Optional[E]:
        with self._lock:
            return self._events.get(pool)
