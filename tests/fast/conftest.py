"""Fixtures for the fast tier: fake servers and pools that are always closed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pymysqlpool import ConnectionPool, ConnectionPoolSingleton

from .fakes import FakeServer


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def make_pool(server: FakeServer) -> Iterator[Callable[..., ConnectionPool]]:
    """Build pools on the ``server`` fake (or another given as connection_factory);
    every pool made is closed at teardown."""
    pools: list[ConnectionPool] = []

    def make(**kwargs: Any) -> ConnectionPool:
        kwargs.setdefault("connection_factory", server)
        pool = ConnectionPool(**kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


@pytest.fixture
def clean_singletons() -> Iterator[None]:
    """Empty ConnectionPoolSingleton's registry before and after the test."""
    ConnectionPoolSingleton._instances.clear()
    yield
    for pool in list(ConnectionPoolSingleton._instances.values()):
        pool.close()
    ConnectionPoolSingleton._instances.clear()


@pytest.fixture
def async_pool_class(monkeypatch: pytest.MonkeyPatch, server: FakeServer) -> Any:
    """AsyncConnectionPool dialing the ``server`` fake (skipped without aiomysql).
    Patched on the class, not the instance: an instance attribute would count
    in the attribute budget (test_shape.py)."""
    pytest.importorskip("aiomysql")  # the fast tier also runs without the asyncio extra (Python 3.9)
    from pymysqlpool.aio import AsyncConnectionPool

    async def connect(self: AsyncConnectionPool, limit: float) -> Any:
        raw = server()
        raw._reader = None  # no stream: nothing for the loop's hang-up probe to read
        return raw, 0.0

    async def close(raw: Any, timeout: Any) -> None:
        raw.close()

    monkeypatch.setattr(AsyncConnectionPool, "_connect", connect)
    monkeypatch.setattr("pymysqlpool._adriver.close", close)
    return AsyncConnectionPool
