"""Server tier: running in production against the real MariaDB: credential
rotation with drain(), close(timeout), resize(), max_waiting, check(), open()/wait()."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest
from server_helpers import Account, ServerView, mysql_kwargs, query

from pymysqlpool import ConnectionPool, TooManyRequests
from support.sessions import kill_sessions
from support.waiting import wait_until


def _sessions(admin: Any, user: str) -> set[int]:
    rows = query(admin, "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (user,))
    return {int(row[0]) for row in rows}


def test_password_rotation_then_drain_without_borrower_errors(admin: Any, make_account: Callable[..., Account]) -> None:
    account = make_account()
    secret = [account.password]
    kwargs = {**mysql_kwargs(), "user": account.user}
    kwargs["password"] = lambda: secret[0]
    # Warm and full: 1 holder + 3 workers never need a new connection before
    # drain(), so no login races the ALTER USER (MariaDB has no dual passwords).
    pool = ConnectionPool(maxsize=4, pre_create_num=4, **kwargs)
    errors: list[BaseException] = []
    cycles = [0]
    stop = threading.Event()

    def work() -> None:
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                with pool.connection() as conn:
                    assert query(conn, "SELECT CURRENT_USER()")[0][0].startswith(account.user)
                cycles[0] += 1
            except BaseException as exc:  # every failure is a borrower error
                errors.append(exc)
            time.sleep(0.002)

    try:
        held = pool.get_conn()  # borrowed across the rotation
        old = _sessions(admin, account.user)
        workers = [threading.Thread(target=work) for _ in range(3)]
        for worker in workers:
            worker.start()
        time.sleep(0.2)
        new_password = account.password + "-rotated"
        query(admin, "ALTER USER %s@'%%' IDENTIFIED BY %s", (account.user, new_password))
        secret[0] = new_password
        pool.drain()
        time.sleep(0.3)
        assert query(held, "SELECT 1") == ((1,),)  # the borrower is not disturbed
        held.close()
        time.sleep(0.2)
        stop.set()
        for worker in workers:
            worker.join(10)
        assert errors == []
        assert cycles[0] > 0
        stats = pool.get_stats()
        assert stats["closed_drained"] == 4 and stats["connect_errors"] == 0
        # Every session the pool has now logged in with the new password.
        assert not (_sessions(admin, account.user) & old)
        assert "rotated" not in repr(pool) and "rotated" not in str(stats)
    finally:
        pool.close()


def test_close_with_timeout_forces_a_late_borrower(
    make_pool: Callable[..., ConnectionPool], admin: Any, server_view: ServerView
) -> None:
    pool = make_pool(maxsize=2, pre_create_num=1)
    late = pool.get_conn()
    prompt = pool.get_conn()
    threading.Timer(0.05, prompt.close).start()
    assert pool.close(timeout=0.5) == 1
    assert server_view.settles_at(admin, 0)  # the forced session is gone on the server too
    with pytest.raises(pymysql.err.MySQLError):
        query(late, "SELECT 1")
    late.close()  # cut mid-command: its slot counts until the kill found the session gone
    assert wait_until(lambda: pool.get_stats()["open"] == 0, timeout=10)


def test_resize_shrink_settles_at_the_new_maxsize(
    make_pool: Callable[..., ConnectionPool], admin: Any, server_view: ServerView
) -> None:
    pool = make_pool(maxsize=5, size=5)
    conns = [pool.get_conn() for _ in range(5)]
    for conn in conns[:2]:
        conn.close()
    pool.resize(maxsize=2, size=2)
    assert server_view.settles_at(admin, 3)  # idle extras closed at once
    for conn in conns[2:]:
        conn.close()
    assert server_view.settles_at(admin, 2)
    with pool.connection() as a, pool.connection() as b:
        assert query(a, "SELECT 1") == query(b, "SELECT 1") == ((1,),)
        assert server_view.count(admin) == 2
    pool.resize(maxsize=4)
    together = [pool.get_conn() for _ in range(4)]
    assert server_view.settles_at(admin, 4)
    for conn in together:
        conn.close()


def test_max_waiting_refuses_beyond_the_queue(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1, max_waiting=0)
    with pool.connection() as conn:
        with pytest.raises(TooManyRequests):
            pool.get_conn(timeout=5)
        assert query(conn, "SELECT 1") == ((1,),)
    assert pool.get_stats()["borrows_rejected"] == 1


def test_check_finds_a_killed_idle_connection(
    make_pool: Callable[..., ConnectionPool], admin: Any, server_view: ServerView
) -> None:
    # Opened by borrowing, not pre_create_num: the background refill would
    # replace the closed one and the server would settle at 3 again.
    pool = make_pool(maxsize=3, size=3)
    conns = [pool.get_conn() for _ in range(3)]
    for conn in conns:
        pool.release(conn)
    victim = sorted(server_view.thread_ids(admin))[0]
    kill_sessions(lambda sql: query(admin, sql), {victim})
    assert pool.check() == 1
    assert pool.available_num == 2
    assert server_view.settles_at(admin, 2)


def test_open_later_then_wait(make_pool: Callable[..., ConnectionPool], admin: Any, server_view: ServerView) -> None:
    pool = make_pool(maxsize=3, pre_create_num=2, open=False)
    assert server_view.count(admin) == 0
    pool.open(wait=True, timeout=10)
    assert pool.total_num == 2
    assert server_view.settles_at(admin, 2)


def test_close_with_timeout_interrupts_a_borrower_blocked_in_a_query(
    make_pool: Callable[..., ConnectionPool], admin: Any, server_view: ServerView
) -> None:
    pool = make_pool(maxsize=1)
    conn = pool.get_conn()
    outcome: list[Any] = []

    def long_query() -> None:
        started = time.monotonic()
        try:
            query(conn, "SELECT SLEEP(20)")
            outcome.append("finished")
        except pymysql.err.MySQLError as exc:
            outcome.append(exc)
        outcome.append(time.monotonic() - started)
        conn.close()

    worker = threading.Thread(target=long_query)
    worker.start()
    time.sleep(0.2)  # the query is on the server now
    assert pool.close(timeout=0.2) == 1
    worker.join(15)
    assert isinstance(outcome[0], pymysql.err.OperationalError)
    assert outcome[1] < 10  # woken by the shutdown, not by the query's end
    assert server_view.settles_at(admin, 0)
    assert pool.get_stats()["open"] == 0
