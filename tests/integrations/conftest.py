"""Fixtures for the integration tests (SQLAlchemy, Django, Flask, FastAPI,
OpenTelemetry): the shared MariaDB from MYSQL_HOST/MYSQL_PORT/..., tables and
pools named with a random prefix and dropped or closed afterwards."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest

from pymysqlpool import ConnectionPool
from server.server_helpers import query


@pytest.fixture
def prefix() -> str:
    return f"it_{secrets.token_hex(5)}"


@pytest.fixture
def table(admin: pymysql.connections.Connection, prefix: str) -> Iterator[str]:
    """A fresh InnoDB table ``(id INT AUTO_INCREMENT PRIMARY KEY, v INT)``."""
    name = f"{prefix}_t"
    query(admin, f"CREATE TABLE `{name}` (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=InnoDB")
    yield name
    query(admin, f"DROP TABLE IF EXISTS `{name}`")


@pytest.fixture
def make_pool(server_kwargs: dict[str, Any], prefix: str) -> Iterator[Callable[..., ConnectionPool]]:
    made: list[ConnectionPool] = []

    def make(**overrides: Any) -> ConnectionPool:
        kwargs = {"pool_name": f"{prefix}_{len(made)}", "maxsize": 4, "ssl_disabled": True, **server_kwargs}
        kwargs.update(overrides)
        pool = ConnectionPool(**kwargs)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.close()
