"""What a new user meets first: ``pool.transaction()`` on both shells, and the
messages for ``with``/``async with`` on the wrong pool."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from server_helpers import query

from pymysqlpool import AsyncConnectionPool, ConnectionPool
from support.server_env import mysql_kwargs

pytestmark = pytest.mark.server


def _rows(admin: Any, table: str) -> list[int]:
    return [row[0] for row in query(admin, f"SELECT v FROM `{table}` ORDER BY v")]


@pytest.mark.parametrize("autocommit", [True, False])
def test_transaction_commits_on_success_and_rolls_back_on_error(make_table: Any, admin: Any, autocommit: bool) -> None:
    table = make_table("tx")
    with ConnectionPool(**mysql_kwargs(), maxsize=1, autocommit=autocommit, ssl_disabled=True) as pool:
        with pool.transaction() as conn, conn.cursor() as cur:
            cur.execute(f"INSERT INTO `{table}` (v) VALUES (1)")
            cur.execute(f"INSERT INTO `{table}` (v) VALUES (2)")
        with pytest.raises(ZeroDivisionError), pool.transaction() as conn, conn.cursor() as cur:
            cur.execute(f"INSERT INTO `{table}` (v) VALUES (3)")
            raise ZeroDivisionError
        with pytest.raises(KeyboardInterrupt), pool.transaction() as conn, conn.cursor() as cur:
            cur.execute(f"INSERT INTO `{table}` (v) VALUES (4)")
            raise KeyboardInterrupt  # as if Ctrl-C landed mid-block
        # the contrast the docs draw: connection() with autocommit=False never commits
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute(f"INSERT INTO `{table}` (v) VALUES (5)")
        assert _rows(admin, table) == ([1, 2, 5] if autocommit else [1, 2])
        stats = pool.get_stats()
        assert stats["borrowed"] == 0 and stats["open"] == 1  # the same connection served every block


def test_async_transaction_commits_rolls_back_and_survives_cancel(make_table: Any, admin: Any) -> None:
    table = make_table("atx")

    async def main() -> None:
        async with AsyncConnectionPool(**mysql_kwargs(), maxsize=1) as pool:
            async with pool.transaction() as conn, conn.cursor() as cur:
                await cur.execute(f"INSERT INTO `{table}` (v) VALUES (1)")
            with pytest.raises(ZeroDivisionError):
                async with pool.transaction() as conn, conn.cursor() as cur:
                    await cur.execute(f"INSERT INTO `{table}` (v) VALUES (2)")
                    raise ZeroDivisionError
            inserted = asyncio.Event()

            async def cancelled() -> None:
                async with pool.transaction() as conn, conn.cursor() as cur:
                    await cur.execute(f"INSERT INTO `{table}` (v) VALUES (3)")
                    inserted.set()
                    await asyncio.sleep(60)

            task = asyncio.ensure_future(cancelled())
            await asyncio.wait_for(inserted.wait(), 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert pool.get_stats()["borrowed"] == 0
            async with pool.connection() as conn, conn.cursor() as cur:  # the slot is usable, nothing open
                await cur.execute("SELECT @@in_transaction")
                assert (await cur.fetchone())[0] == 0

    asyncio.run(asyncio.wait_for(main(), 60))
    assert _rows(admin, table) == [1]


def test_async_with_on_the_thread_pool_says_which_to_use() -> None:
    async def main(pool: ConnectionPool) -> None:
        with pytest.raises(TypeError, match=r"thread pool: use 'with'.*AsyncConnectionPool"):
            async with pool:
                pass
        with pytest.raises(TypeError, match=r"thread pool: use 'with'.*AsyncConnectionPool"):
            async with pool.connection():
                pass

    with ConnectionPool(**mysql_kwargs(), maxsize=1, ssl_disabled=True) as pool:
        asyncio.run(main(pool))
        assert pool.get_stats()["borrowed"] == 0  # the connection the misuse borrowed went back


def test_with_on_the_async_pool_says_which_to_use() -> None:
    async def main() -> None:
        pool = AsyncConnectionPool(**mysql_kwargs(), maxsize=1)
        try:
            with pytest.raises(TypeError, match=r"asyncio pool: use 'async with'.*ConnectionPool"), pool:
                pass
            with pytest.raises(TypeError, match=r"asyncio pool: use 'async with'.*ConnectionPool"), pool.connection():
                pass
            assert pool.get_stats()["borrowed"] == 0
        finally:
            await pool.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _frames(exc: BaseException) -> int:
    """Frames printed for ``exc`` and its causes, the event loop's own
    (asyncio.run, the loop, its sockets: there with or without a pool) left out."""
    import os
    import traceback

    loop_files = os.path.dirname(asyncio.__file__) + os.sep
    lines = traceback.format_exception(exc)
    return sum(line.lstrip().startswith('File "') and loop_files not in line for line in lines)


def _assert_short_and_named(exc: BaseException, port: int, name: str) -> None:
    import pymysql

    assert isinstance(exc, pymysql.err.OperationalError) and exc.args[0] == 2003  # what callers catch, unchanged
    assert f"127.0.0.1:{port}" in str(exc) and repr(name) in str(exc)
    cause = exc.__cause__
    assert isinstance(cause, pymysql.err.OperationalError) and cause.args == (2003, cause.args[1])
    assert "Can't connect" in cause.args[1]
    assert _frames(exc) <= 15, _frames(exc)


@pytest.mark.parametrize("prefill", [False, True])
def test_connect_error_is_short_and_says_where(prefill: bool) -> None:
    port = _closed_port()
    kwargs = {**mysql_kwargs(), "port": port, "connect_timeout": 2, "pool_name": "first-hour"}
    with pytest.raises(Exception) as info:
        if prefill:
            ConnectionPool(**kwargs, pre_create_num=1)
        else:
            with ConnectionPool(**kwargs) as pool:
                pool.get_conn()
    _assert_short_and_named(info.value, port, "first-hour")


@pytest.mark.parametrize("prefill", [False, True])
def test_async_connect_error_is_short_and_says_where(prefill: bool) -> None:
    port = _closed_port()
    kwargs = {**mysql_kwargs(), "port": port, "connect_timeout": 2, "pool_name": "first-hour-async"}

    async def main() -> None:
        if prefill:
            async with AsyncConnectionPool(**kwargs, pre_create_num=1):
                pass
        else:
            pool = AsyncConnectionPool(**kwargs)
            try:
                await pool.get_conn()
            finally:
                await pool.close()

    with pytest.raises(Exception) as info:
        asyncio.run(asyncio.wait_for(main(), 60))
    _assert_short_and_named(info.value, port, "first-hour-async")
