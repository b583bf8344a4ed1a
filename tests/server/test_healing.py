"""Self-healing against the real server: idle connections the server killed
are replaced before anyone gets them, and a borrow dropped without being
given back is reclaimed."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import pytest
from server_helpers import ServerView, query

from pymysqlpool import ConnectionPool
from support.leaks import LeakWarnings
from support.sessions import kill_sessions
from support.waiting import wait_until

pytestmark = pytest.mark.server


@pytest.mark.parametrize("validation_interval", [0.0, 0.2])
def test_idle_connections_killed_by_the_server_are_replaced_before_lending(
    make_pool: Callable[..., ConnectionPool], server_view: ServerView, admin: Any, validation_interval: float
) -> None:
    pool = make_pool(maxsize=3, pre_create_num=3, validation_interval=validation_interval, pool_name="heal-idle")
    dead = server_view.thread_ids(admin)
    assert len(dead) == 3
    kill_sessions(lambda sql: query(admin, sql), dead, gone_within=10.0)
    time.sleep(validation_interval + 0.05)  # idle longer than the window: each is pinged before use

    held = [pool.get_conn(timeout=10) for _ in range(3)]
    try:
        for conn in held:
            assert conn.thread_id() not in dead
            assert query(conn, "SELECT 1") == ((1,),)
    finally:
        for conn in held:
            pool.release(conn)
    assert (pool.available_num, pool.total_num) == (3, 3)
    assert pool.get_stats()["closed_failed_check"] >= 1
    assert server_view.count(admin) == 3
    assert not server_view.thread_ids(admin) & dead


def test_borrow_dropped_without_return_is_reclaimed(
    make_pool: Callable[..., ConnectionPool], server_view: ServerView, admin: Any, leak_warnings: LeakWarnings
) -> None:
    pool = make_pool(maxsize=1, pool_name="heal-leak")
    conn = pool.get_conn()
    lost = conn.thread_id()
    conn.begin()
    del conn  # the borrower forgot it: the pool must not stay at maxsize forever
    gc.collect()

    with pool.connection(timeout=10) as conn:  # the slot came back
        assert conn.thread_id() != lost
        assert query(conn, "SELECT 1") == ((1,),)
    stats = pool.get_stats()
    assert stats["leaks_reclaimed"] == 1 and stats["leaks_detected"] == 1
    assert len(leak_warnings.messages) == 1 and "'heal-leak'" in leak_warnings.messages[0]
    assert pool.total_num == 1
    assert wait_until(lambda: server_view.thread_ids(admin) == {pool_thread(pool)}, timeout=10.0)


def pool_thread(pool: ConnectionPool) -> int:
    with pool.connection() as conn:
        return int(conn.thread_id())


def test_close_inside_with_block_is_fine(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1, pool_name="heal-close-in-with")
    with pool.connection() as conn:
        query(conn, "SELECT 1")
        conn.close()  # given back early; leaving the block must not return it twice
    stats = pool.get_stats()
    assert stats["borrows"] == stats["returns"] == 1
    assert (pool.available_num, pool.total_num) == (1, 1)


def test_keepalive_outlives_a_short_wait_timeout(
    make_pool: Callable[..., ConnectionPool], server_view: ServerView, admin: Any
) -> None:
    # The session's wait_timeout (3 s) caps the keep-alive interval at half of it,
    # so an idle connection is pinged before the server would drop it.
    pool = make_pool(maxsize=1, pre_create_num=1, init_command="SET SESSION wait_timeout = 3", pool_name="heal-ka")
    with pool.connection() as conn:
        first = conn.thread_id()
        assert query(conn, "SELECT @@SESSION.wait_timeout") == ((3,),)
    time.sleep(4.5)  # idle for longer than wait_timeout
    assert server_view.thread_ids(admin) == {first}  # still open on the server
    with pool.connection() as conn:
        assert conn.thread_id() == first
    stats = pool.get_stats()
    assert stats["keepalive_pings"] >= 1
    assert stats["closed_broken"] == stats["closed_failed_check"] == 0
