"""Import side effects, the maintenance thread's life, and the password never
showing in reprs, errors or logs."""

from __future__ import annotations

import gc
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, List

import pytest

from pymysqlpool import (
    ConnectionPool,
    ConnectionPoolSingleton,
    ConnectionReturnedError,
    PoolClosed,
    PoolTimeout,
    ReturnConnectionToPoolError,
)
from support.waiting import wait_until

from .fakes import FakeConnectError, FakeServer

PASSWORD = "pw-Zq8!unlikely-Xy7"

IMPORT_PROBE = """
import json, logging, sys, threading, warnings
root = logging.getLogger()
before = {
    "threads": threading.active_count(),
    "root_handlers": [repr(h) for h in root.handlers],
    "root_level": root.level,
    "filters": repr(warnings.filters),
    "showwarning": repr(warnings.showwarning),
    "last_resort": repr(logging.lastResort),
}
import pymysqlpool
after = {
    "threads": threading.active_count(),
    "root_handlers": [repr(h) for h in root.handlers],
    "root_level": root.level,
    "filters": repr(warnings.filters),
    "showwarning": repr(warnings.showwarning),
    "last_resort": repr(logging.lastResort),
}
own = [type(h).__name__ for h in logging.getLogger("pymysqlpool").handlers]
print(json.dumps({"before": before, "after": after, "own": own}))
"""


def test_import_has_no_side_effects() -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", IMPORT_PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # not even a warning
    report = json.loads(done.stdout)
    assert report["after"] == report["before"]
    assert report["own"] == ["NullHandler"]


def _maintenance_threads(name: str) -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"pymysqlpool-maintenance-{name}"]


def test_maintenance_thread_starts_on_first_connection_and_stops_on_close(server: FakeServer) -> None:
    name = f"hygiene-{time.monotonic_ns()}"
    pool = ConnectionPool(name=name, connection_factory=server)
    try:
        assert _maintenance_threads(name) == []  # a pool that never connected runs nothing
        with pool.connection():
            pass
        assert len(_maintenance_threads(name)) == 1
    finally:
        pool.close()
    assert _maintenance_threads(name) == []


def test_forgotten_pool_does_not_keep_its_thread(server: FakeServer) -> None:
    name = f"forgotten-{time.monotonic_ns()}"
    pool = ConnectionPool(name=name, connection_factory=server, max_idle=0.2)  # short maintenance tick
    with pool.connection():
        pass
    assert len(_maintenance_threads(name)) == 1
    del pool
    gc.collect()
    assert wait_until(lambda: not _maintenance_threads(name))


# -- the password -------------------------------------------------------------------


@pytest.mark.usefixtures("clean_singletons")
def test_password_never_shown(server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pymysqlpool")
    kwargs: dict[str, Any] = {"host": "db.internal", "user": "app", "password": PASSWORD, "database": "shop"}
    shown: List[str] = []
    pool = ConnectionPool(maxsize=1, connection_factory=server, **kwargs)
    try:
        shown += [repr(pool), str(pool), repr(pool._config), str(pool.get_stats())]
        conn = pool.get_conn()
        shown.append(repr(conn))
        try:
            pool.get_conn(timeout=0)
        except PoolTimeout as exc:
            shown += [str(exc), repr(exc)]
        conn.close()
        for call in (lambda: pool.release(conn), lambda: conn.cursor()):
            try:
                call()
            except (ReturnConnectionToPoolError, ConnectionReturnedError) as exc:
                shown += [str(exc), repr(exc)]
        shown.append(repr(conn))
        # A connect that fails after the pool has connected once: retried, then reported.
        with pool.connection() as held:
            held.raw.break_()
        server.fail_rate = 1.0
        try:
            pool.get_conn(timeout=0.05)
        except (PoolTimeout, FakeConnectError) as exc:
            shown += [str(exc), repr(exc), str(exc.__cause__)]
        server.fail_rate = 0.0
    finally:
        pool.close()
    try:
        pool.get_conn()
    except PoolClosed as exc:
        shown.append(str(exc))
    for bad in ({"maxsize": 0}, {"hots": "x"}, {"leak_timeout": 0}):
        try:
            ConnectionPool(**kwargs, **bad)
        except (TypeError, ValueError) as exc:
            shown.append(str(exc))
    ConnectionPoolSingleton(name="pw", connection_factory=server, **kwargs)
    try:
        ConnectionPoolSingleton(name="pw", connection_factory=server, **{**kwargs, "password": PASSWORD + "2"})
    except ValueError as exc:
        shown.append(str(exc))
    shown += [r.getMessage() for r in caplog.records]
    assert len(shown) > 15
    leaks = [text for text in shown if PASSWORD in text]
    assert leaks == []


def test_repr_is_informative(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(name="shown", user="app", host="db", maxsize=3)
    text = repr(pool)
    assert "shown" in text and "app@db" in text and "maxsize=3" in text
    pool.close()
    assert "closed" in repr(pool)
