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
