"""Fixtures shared by the test modules outside the tiers' own folders."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from support.leaks import LeakWarnings, leak_guard
from support.server_env import mysql_kwargs
from support.shells import SHELLS


def pytest_configure(config: pytest.Config) -> None:
    # A shell starts a background job (``./dev test &``) with SIGINT ignored;
    # the interrupt tests send a real SIGINT and need Python's own handler.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Behaviour tests take the ``shell`` fixture (through ``make_pool``) and run
    # once for each shell; a test of a thread-only feature says so with
    # ``@pytest.mark.threads_only("why")``.
    if "shell" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("threads_only")
        metafunc.parametrize("shell", ["thread"] if only else list(SHELLS))


@pytest.fixture(autouse=True)
def _leak_guard() -> Iterator[LeakWarnings]:
    """Fails a test that caused a ConnectionLeakWarning it did not expect (support/leaks.py)."""
    with leak_guard() as guard:
        yield guard


@pytest.fixture
def leak_warnings(_leak_guard: LeakWarnings) -> LeakWarnings:
    """For a test that drops connections on purpose: the leak warnings it
    caused, to assert on; they do not fail it."""
    _leak_guard.expected = True
    return _leak_guard


@pytest.fixture(scope="session")
def live_server() -> dict:
    """The test server's settings (MYSQL_HOST, MYSQL_PORT, ...; 127.0.0.1:3306
    by default); fails the test if it is not reachable."""
    server = mysql_kwargs()
    try:
        pymysql.connect(connect_timeout=3, **server).close()
    except pymysql.MySQLError as exc:
        pytest.fail(f"no MySQL server at {server['host']}:{server['port']} (./dev test starts one): {exc}")
    return server


@pytest.fixture(scope="session")
def server_kwargs(live_server: dict) -> dict[str, Any]:
    """The same settings, under the name the server and integration tiers use."""
    return live_server


@pytest.fixture
def admin(live_server: dict) -> Iterator[pymysql.connections.Connection]:
    """A raw connection with autocommit, for set-up and for looking at the server."""
    conn = pymysql.connect(**{**live_server, "autocommit": True, "connect_timeout": 10})
    try:
        yield conn
    finally:
        conn.close()
