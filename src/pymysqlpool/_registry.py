"""Pools the integrations make on first use: one per process for each owner
(a Django settings alias, a SQLAlchemy URL) and its connection parameters."""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Tuple

from .pool import ConnectionPool

__all__ = ["PoolRegistry"]

_Key = Tuple[str, str]


class PoolRegistry:
    def __init__(self) -> None:
        self._pools: Dict[_Key, ConnectionPool] = {}
        self._lock = threading.Lock()

    def get(
        self,
        owner: str,
        connect_kwargs: Dict[str, Any],
        options: Dict[str, Any],
        default_name: Optional[str],
        unkeyed: Tuple[str, ...] = (),
    ) -> ConnectionPool:
        """The open pool for ``owner`` and these parameters, made on first use
        (``pool_name`` defaults to ``default_name``). A changed parameter (the
        Django test runner's ``test_`` database) gets a pool of its own;
        ``unkeyed`` names parameters that are the same for every pool."""
        params = {k: v for k, v in connect_kwargs.items() if k not in unkeyed}
        key = owner, repr(sorted({**params, **options}.items()))
        pool = self._pools.get(key)
        if pool is not None and not pool.closed:
            return pool
        with self._lock:
            pool = self._pools.get(key)
            if pool is None or pool.closed:
                pool = ConnectionPool(**{"pool_name": default_name, **options}, **connect_kwargs)
                self._pools[key] = pool
            return pool

    def latest(self, owner: str) -> Optional[ConnectionPool]:
        """The open pool most recently made for ``owner``, if any."""
        with self._lock:
            found = [pool for (name, _), pool in self._pools.items() if name == owner and not pool.closed]
        return found[-1] if found else None

    def close_all(self) -> None:
        with self._lock:
            pools: List[ConnectionPool] = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.close()
