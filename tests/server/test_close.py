"""pool.close(): idle connections go at once, borrowed ones when given back,
nothing new is lent, and the server sees all of it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from server_helpers import ServerView, query

from pymysqlpool import ConnectionPool, GetConnectionFromPoolError, PoolClosed
from support.waiting import wait_until

pytestmark = pytest.mark.server


def maintenance_threads(pool: ConnectionPool) -> list[Any]:
    """The pool's maintenance: a thread of the thread pool, a task of the asyncio pool."""
    name = f"pymysqlpool-maintenance-{pool.name}"
    if getattr(pool, "shell", "thread") == "asyncio":
        return list(pool.tasks_named(name))
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


def test_close_closes_idle_now_and_borrowed_on_return(
    make_pool: Callable[..., ConnectionPool],
    make_table: Callable[..., str],
    server_view: ServerView,
    admin: Any,
    prefix: str,
) -> None:
    table = make_table("close")
    pool = make_pool(maxsize=4, pre_create_num=3, pool_name=f"{prefix}-close")
    assert server_view.count(admin) == 3
    assert maintenance_threads(pool)
    borrowed = pool.get_conn()
    kept = borrowed.thread_id()
    borrowed.begin()
    query(borrowed, f"INSERT INTO `{table}` (v) VALUES (1)")

    pool.close()
    assert pool.closed
    assert (pool.available_num, pool.total_num) == (0, 1)
    assert server_view.settles_at(admin, 1)
    assert server_view.thread_ids(admin) == {kept}
    assert not maintenance_threads(pool)

    for borrow in (pool.get_conn, pool.connection, pool.get_connection, lambda: pool.get_conn(timeout=0)):
        with pytest.raises(PoolClosed) as caught:
            borrow()
        assert isinstance(caught.value, GetConnectionFromPoolError)

    # the borrower keeps a working connection until it gives it back
    assert query(borrowed, f"SELECT COUNT(*) FROM `{table}`") == ((1,),)
    pool.release(borrowed)
    assert (pool.available_num, pool.total_num) == (0, 0)
    assert server_view.settles_at(admin, 0)
    assert query(admin, f"SELECT COUNT(*) FROM `{table}`") == ((0,),)  # never committed
    stats = pool.get_stats()
    assert stats["closed_on_pool_close"] == 3
    assert stats["borrows"] == stats["returns"] == 1
    assert stats["borrow_errors"] == 4


def test_close_is_idempotent(make_pool: Callable[..., ConnectionPool], server_view: ServerView, admin: Any) -> None:
    pool = make_pool(maxsize=2, pre_create_num=2, pool_name="close-twice")
    pool.close()
    first = pool.get_stats()
    pool.close()
    pool.close()
    assert pool.get_stats() == first
    assert pool.closed and pool.total_num == 0
    assert server_view.settles_at(admin, 0)


def test_close_wakes_a_waiting_borrower(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1, pool_name="close-waiter")
    held = pool.get_conn()
    outcome: list[BaseException] = []
    waiting = threading.Event()

    def borrower() -> None:
        waiting.set()
        try:
            pool.get_conn(timeout=30)
        except BaseException as exc:  # checked below
            outcome.append(exc)

    thread = threading.Thread(target=borrower, daemon=True)
    thread.start()
    assert waiting.wait(5)
    assert wait_until(lambda: pool.get_stats()["waiting"] == 1, timeout=5)
    pool.close()
    thread.join(timeout=5)
    assert not thread.is_alive(), "close() left a borrower waiting"
    assert len(outcome) == 1 and isinstance(outcome[0], PoolClosed)
    pool.release(held)
    assert pool.total_num == 0


def test_pool_as_context_manager(server_view: ServerView, admin: Any, prefix: str) -> None:
    with ConnectionPool(maxsize=3, pre_create_num=2, pool_name=f"{prefix}-ctx", **server_view.connect_kwargs) as pool:
        assert server_view.count(admin) == 2
        with pool.connection() as conn:
            assert query(conn, "SELECT 1") == ((1,),)
        assert not pool.closed
    assert pool.closed
    assert pool.total_num == 0
    assert server_view.settles_at(admin, 0)
    assert not maintenance_threads(pool)
    with pytest.raises(PoolClosed):
        pool.get_conn()


def test_context_manager_closes_on_error(server_view: ServerView, admin: Any, prefix: str) -> None:
    kwargs = {"maxsize": 2, "pre_create_num": 1, "pool_name": f"{prefix}-ctx-err", **server_view.connect_kwargs}
    with pytest.raises(KeyError), ConnectionPool(**kwargs) as pool:
        raise KeyError("boom")
    assert pool.closed
    assert server_view.settles_at(admin, 0)
