"""The backend's pools: one per settings alias and connection parameters, per process."""

from __future__ import annotations

from typing import Any, Dict, Optional

from .._registry import PoolRegistry
from ..pool import ConnectionPool

__all__ = ["close_pools", "pool_for_alias"]

_pools = PoolRegistry()


def get_pool(alias: str, connect_kwargs: Dict[str, Any], pool_options: Dict[str, Any]) -> ConnectionPool:
    """The pool for these settings, made on first use. A changed NAME (the
    test runner's ``test_`` database) or other parameter gets its own pool."""
    # The converters dict is Django's own and the same for every alias.
    return _pools.get(alias, connect_kwargs, pool_options, f"django-{alias}", unkeyed=("conv",))


def pool_for_alias(alias: str = "default") -> Optional[ConnectionPool]:
    """The open pool most recently made for ``alias``, if any (for stats, metrics)."""
    return _pools.latest(alias)


def close_pools() -> None:
    """Close every pool this backend made in this process."""
    _pools.close_all()
