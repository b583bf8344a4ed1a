"""The backend's pools: one per settings alias and connection parameters, per process."""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Tuple

from ..pool import ConnectionPool

__all__ = ["close_pools", "pool_for_alias"]

_Key = Tuple[str, str]
_pools: Dict[_Key, ConnectionPool] = {}
_lock = threading.Lock()


def _key(alias: str, connect_kwargs: Dict[str, Any], pool_options: Dict[str, Any]) -> _Key:
    # The converters dict is Django's own and the same for every alias.
    params = {k: v for k, v in connect_kwargs.items() if k != "conv"}
    return alias, repr(sorted({**params, **pool_options}.items()))


def get_pool(alias: str, connect_kwargs: Dict[str, Any], pool_options: Dict[str, Any]) -> ConnectionPool:
    """The pool for these settings, made on first use. A changed NAME (the
    test runner's ``test_`` database) or other parameter gets its own pool."""
    key = _key(alias, connect_kwargs, pool_options)
    pool = _pools.get(key)
    if pool is not None and not pool.closed:
        return pool
    with _lock:
        pool = _pools.get(key)
        if pool is None or pool.closed:
            options = {"pool_name": f"django-{alias}", **pool_options}
            pool = ConnectionPool(**options, **connect_kwargs)
            _pools[key] = pool
        return pool


def pool_for_alias(alias: str = "default") -> Optional[ConnectionPool]:
    """The open pool most recently made for ``alias``, if any (for stats, metrics)."""
    with _lock:
        found = [pool for (name, _), pool in _pools.items() if name == alias and not pool.closed]
    return found[-1] if found else None


def close_pools() -> None:
    """Close every pool this backend made in this process."""
    with _lock:
        pools: List[ConnectionPool] = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()
