"""The asyncio pool's part of the public seam (docs/integrations.md): what
``AsyncClusterPool`` opens its node pools with -- ``bind``, ``start``,
``prefill``, ``start_maintenance`` -- against the real server."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pymysql
import pytest

from pymysqlpool import AsyncConnectionPool
from pymysqlpool.aio import AsyncPooledConnection
from pymysqlpool.errors import PoolClosed, WrongEventLoop
from support.waiting import wait_until

pytestmark = pytest.mark.server

LIMIT = 60.0  # the whole test, so a hang fails instead of blocking the tier


def test_bind_start_prefill_and_upkeep_open_a_node_pool_as_async_with_would(server_kwargs: dict[str, Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        pool = AsyncConnectionPool(**server_kwargs, open=False, pre_create_num=2, maxsize=3, pool_name="seam-prefill")
        other = asyncio.new_event_loop()
        try:
            pool.start_maintenance()  # neither bound nor started: nothing runs
            pool.bind(loop)
            pool.bind(loop)  # the same loop again is fine
            with pytest.raises(WrongEventLoop):
                pool.bind(other)
            assert pool.start() is True and pool.start() is False
            await pool.prefill()
            assert pool.total_num == 2 == pool.available_num
            async with pool.connection() as conn:
                assert pool.borrowed == 1
                async with conn.cursor() as cur:
                    await cur.execute("SELECT 1")
                    assert await cur.fetchall() == ((1,),)
            assert pool.borrowed == 0
        finally:
            other.close()
            await pool.close()
        assert pool.shut_down

    asyncio.run(asyncio.wait_for(main(), LIMIT))


def test_start_maintenance_warms_up_and_prefill_raises_the_connect_error(server_kwargs: dict[str, Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        warm = AsyncConnectionPool(**server_kwargs, open=False, pre_create_num=2, maxsize=3, pool_name="seam-upkeep")
        dead = AsyncConnectionPool(
            **{**server_kwargs, "host": "127.0.0.1", "port": 1},
            open=False,
            pre_create_num=1,
            connect_timeout=2,
            pool_name="seam-dead",
        )
        try:
            warm.bind(loop)
            warm.start()
            assert warm.total_num == 0
            warm.start_maintenance()
            assert await asyncio.to_thread(wait_until, lambda: warm.total_num == 2, 20)
            dead.bind(loop)
            dead.start()
            with pytest.raises(pymysql.err.OperationalError):
                await dead.prefill()
            assert dead.total_num == 0
        finally:
            await warm.close()
            await dead.close()

    asyncio.run(asyncio.wait_for(main(), LIMIT))


def test_lend_or_wait_lends_an_idle_connection_at_once_and_else_gives_what_to_await(
    server_kwargs: dict[str, Any],
) -> None:
    """``lend_or_wait()``: ``get_conn()`` on the pool's own loop without its
    coroutine (AsyncClusterPool's common case): an idle connection is the
    result itself; with every connection lent it is an awaitable that waits
    for one, in the pool's FIFO, like ``get_conn()``."""

    async def main() -> None:
        pool = AsyncConnectionPool(**server_kwargs, pre_create_num=1, maxsize=1, timeout=5, pool_name="seam-lend")
        async with pool:
            first = pool.lend_or_wait()
            assert type(first) is AsyncPooledConnection and pool.borrowed == 1
            pending = pool.lend_or_wait()
            assert inspect.isawaitable(pending) and not isinstance(pending, AsyncPooledConnection)
            waiter = asyncio.ensure_future(pending)
            await asyncio.sleep(0.05)
            assert not waiter.done()  # every connection is lent: it waits
            raw = first.raw
            await pool.release(first)
            second = await asyncio.wait_for(waiter, 5)
            assert second.raw is raw and pool.borrowed == 1  # the one given back, handed on
            async with second.cursor() as cur:
                await cur.execute("SELECT 1")
                assert await cur.fetchall() == ((1,),)
            await pool.release(second)
            assert pool.borrowed == 0
        late = pool.lend_or_wait()  # closed: the awaitable raises as get_conn() would
        with pytest.raises(PoolClosed):
            await late

    asyncio.run(asyncio.wait_for(main(), LIMIT))
