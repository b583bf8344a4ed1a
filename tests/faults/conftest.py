"""Fixtures for fault-injection tests: private MariaDB servers and a fault proxy.

None of these touch the shared server on 127.0.0.1:3306.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support import run_tables
from support.shells import pool_type

try:
    from support.tcp_proxy import TCPProxy
    from support.throwaway_mariadb import ThrowawayMariaDB
except ImportError:  # pytest was run without `pythonpath = ["tests"]`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from support.tcp_proxy import TCPProxy
    from support.throwaway_mariadb import ThrowawayMariaDB


@pytest.fixture(scope="session")
def throwaway_server() -> Iterator[ThrowawayMariaDB]:
    """The session's private server, shared by all tests and closed at session end.

    A test may stop, kill or restart it: it is started again before the next test
    that uses it. Use ``fresh_server`` to change server settings or get an empty one.
    """
    server = ThrowawayMariaDB()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(autouse=True)
def _revive_throwaway_server(request: pytest.FixtureRequest) -> None:
    if "throwaway_server" in request.fixturenames:
        server: ThrowawayMariaDB = request.getfixturevalue("throwaway_server")
        if not server.is_running():
            server.start()


@pytest.fixture
def fresh_server(make_server: Callable[..., ThrowawayMariaDB]) -> ThrowawayMariaDB:
    """A new, empty private server for this test only (well under a second to set up)."""
    return make_server()


@pytest.fixture
def make_server() -> Iterator[Callable[..., ThrowawayMariaDB]]:
    """Factory: ``make_server(max_connections=20, extra_args=[...])`` -> a started server.

    Takes ThrowawayMariaDB's keyword arguments; every server is closed after the test.
    """
    servers: list[ThrowawayMariaDB] = []

    def make(**kwargs: Any) -> ThrowawayMariaDB:
        server = ThrowawayMariaDB(**kwargs)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def make_proxy() -> Iterator[Callable[[int], TCPProxy]]:
    """Factory: ``make_proxy(server.port)`` -> a TCPProxy closed after the test."""
    proxies: list[TCPProxy] = []

    def make(target_port: int) -> TCPProxy:
        proxy = TCPProxy(target_port=target_port)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


@pytest.fixture
def tcp_proxy(throwaway_server: ThrowawayMariaDB, make_proxy: Callable[[int], TCPProxy]) -> TCPProxy:
    """A TCPProxy in front of ``throwaway_server``; connect to ``tcp_proxy.port``."""
    return make_proxy(throwaway_server.port)


# -- pools and the fault summary -------------------------------------------------


@pytest.fixture
def fault_report() -> Callable[..., None]:
    """``fault_report(fault, errors, recovery_s, note="")`` adds a row to the table
    printed at the end of the run (support/run_tables.py): how users fared while
    the fault lasted."""

    def report(fault: str, errors: int, recovery_s: float | None, note: str = "") -> None:
        run_tables.add(run_tables.FAULTS, {"fault": fault, "errors": errors, "recovery_s": recovery_s, "note": note})

    return report


@pytest.fixture
def make_pool(shell: str) -> Iterator[Callable[..., Any]]:
    """Factory: ``make_pool(**kwargs)`` -> a pool of the test's ``shell`` (see
    tests/conftest.py), closed after the test."""
    from pymysqlpool import ConnectionPool

    pools: list[ConnectionPool] = []
    kind = pool_type(shell)

    def make(**kwargs: Any) -> ConnectionPool:
        pool = kind(**kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()
