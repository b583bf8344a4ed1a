"""Scenario 8: the process forks while the pool holds idle and borrowed connections.

The child must never speak on the parent's sockets (no COM_QUIT, no query),
yet its own borrows must work; the parent's sessions must survive untouched.
MariaDB has no Com_quit counter, so the evidence is server-side: the parent's
session ids stay in PROCESSLIST, keep answering, and ``Aborted_clients`` does
not move (a socket shut down under the server would count there).
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest
from _faultkit import (
    admin_connection,
    assert_consistent,
    connection_id,
    create_user,
    global_status,
    session_ids,
    user_kwargs,
)

from pymysqlpool import ConnectionPool, PooledConnection
from support.throwaway_mariadb import ThrowawayMariaDB
from support.waiting import wait_until

pytestmark = [
    pytest.mark.faults,
    pytest.mark.threads_only("an event loop does not survive fork: the asyncio pool is made in the child"),
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)"),
]

CHILD_TIMEOUT = 20.0


def child_work(pool: ConnectionPool, inherited: PooledConnection) -> dict[str, Any]:
    """Runs in the child: must not touch the parent's connections."""
    report: dict[str, Any] = {"open_after_fork": pool.total_num, "idle_after_fork": pool.available_num}
    try:  # the parent's socket must be unusable here, not shared
        connection_id(inherited)
    except pymysql.err.MySQLError as exc:
        report["inherited_use"] = type(exc).__name__
    else:
        report["inherited_use"] = "worked"
    pool.release(inherited)  # forgotten, not closed: nothing is sent
    with pool.connection(timeout=5) as conn:
        report["child_id"] = connection_id(conn)
    report["open_after_borrow"] = pool.total_num
    pool.close()  # closes the child's own connection (COM_QUIT on its own socket)
    return report


def run_in_child(pool: ConnectionPool, inherited: PooledConnection) -> dict[str, Any]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        status = 1
        try:
            os.close(read_end)
            payload = json.dumps(child_work(pool, inherited))
            status = 0
        except BaseException as exc:
            payload = json.dumps({"error": repr(exc)})
        try:
            os.write(write_end, payload.encode()[:60000])
        finally:
            os._exit(status)
    os.close(write_end)
    try:
        chunks: list[bytes] = []
        deadline = time.monotonic() + CHILD_TIMEOUT
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], max(deadline - time.monotonic(), 0.0))
            if not ready:
                break
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        status = -1
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.02)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the child did not finish in time")
    finally:
        os.close(read_end)
    report: dict[str, Any] = json.loads(b"".join(chunks) or b"{}")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, report
    return report


def test_fork_with_idle_and_borrowed_connections(
    throwaway_server: ThrowawayMariaDB, make_pool: Callable[..., Any]
) -> None:
    user = "u_fork"
    create_user(throwaway_server, user)
    pool = make_pool(maxsize=4, timeout=5, connect_timeout=2, **user_kwargs(throwaway_server, user))
    conns = [pool.get_conn() for _ in range(3)]
    ids = [connection_id(conn) for conn in conns]
    borrowed, borrowed_id = conns[0], ids[0]
    for conn in conns[1:]:
        pool.release(conn)
    idle_ids = set(ids[1:])
    assert session_ids(throwaway_server, user) == set(ids)

    admin = admin_connection(throwaway_server)
    try:
        aborted_before = global_status(admin, "Aborted_clients")
        report = run_in_child(pool, borrowed)
        # The child closed its own session politely; wait for the server to drop it.
        assert wait_until(lambda: report["child_id"] not in session_ids(throwaway_server, user), timeout=5)
        aborted_after = global_status(admin, "Aborted_clients")
    finally:
        admin.close()

    # The child started from an empty pool and opened its own connection.
    assert report["open_after_fork"] == report["idle_after_fork"] == 0
    assert report["open_after_borrow"] == 1
    assert report["child_id"] not in ids
    assert report["inherited_use"] != "worked"
    # Nothing the child did reached the parent's sessions.
    assert aborted_after == aborted_before
    assert session_ids(throwaway_server, user) == set(ids)

    # The parent's connections still work, on the same server sessions.
    assert not borrowed.returned
    assert connection_id(borrowed) == borrowed_id
    pool.release(borrowed)
    time.sleep(pool._config.validation_interval + 0.1)  # make the pool ping before lending
    again = [pool.get_conn() for _ in range(3)]
    assert {connection_id(conn) for conn in again} == set(ids)
    for conn in again:
        pool.release(conn)
    stats = assert_consistent(pool)
    assert stats["closed_failed_check"] == stats["closed_broken"] == 0
    assert stats["connections_made"] == 3
    assert idle_ids <= session_ids(throwaway_server, user)
