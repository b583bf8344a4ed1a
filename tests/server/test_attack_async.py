"""asyncio cancellation swept across every await of a borrow's life (an
independent tester's checks).

asyncio.timeout() with deadlines stepped by 50 µs from 0 lands in turn in
the borrow (queue, validation ping with validation_interval=0), the
statement, the fetch, the cursor's close, the COMMIT of pool.transaction()
and the return (rollback, COM_RESET_CONNECTION with reset_session=True).
Whatever it hits, the borrower sees TimeoutError or success, and the pool's
books end exact with every slot usable.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

import aiomysql
import pytest
from server_helpers import Account, mysql_kwargs

from pymysqlpool import AsyncConnectionPool

pytestmark = pytest.mark.server

CURSORS = [aiomysql.Cursor, aiomysql.DictCursor, aiomysql.SSCursor, aiomysql.SSDictCursor]
STEPS = 60
SQL = "SELECT seq FROM seq_1_to_300"


async def _one(pool: AsyncConnectionPool, form: str, cls: Any) -> None:
    if form == "transaction":
        async with pool.transaction() as conn, conn.cursor(cls) as cur:
            await cur.execute(SQL)
            await cur.fetchall()
        return
    async with pool.connection() as conn:
        if form == "async-with":
            async with conn.cursor(cls) as cur:
                await cur.execute(SQL)
                await cur.fetchall()
        else:
            cur = await conn.cursor(cls)
            await cur.execute(SQL)
            await cur.fetchall()
            await cur.close()


@pytest.mark.parametrize("form", ["async-with", "await", "transaction"])
def test_asyncio_timeout_at_every_await_is_a_timeout_and_loses_nothing(
    make_account: Callable[..., Account], form: str
) -> None:
    account = make_account()
    kwargs = {**mysql_kwargs(), "user": account.user, "password": account.password}

    async def main() -> collections.Counter[str]:
        seen: collections.Counter[str] = collections.Counter()
        async with AsyncConnectionPool(
            **kwargs, maxsize=2, validation_interval=0, reset_session=True, autocommit=False, connect_timeout=3
        ) as pool:
            for cls in CURSORS:
                for step in range(STEPS):
                    try:
                        async with asyncio.timeout(step * 0.00005):
                            await _one(pool, form, cls)
                        seen["ok"] += 1
                    except TimeoutError:
                        seen["timeout"] += 1
                    except BaseException as exc:
                        seen[f"{cls.__name__}: {type(exc).__name__}: {exc}"] += 1
            for _ in range(500):
                stats = pool.get_stats()
                if not stats["killing"] and stats["open"] == stats["idle"]:
                    break
                await asyncio.sleep(0.01)
            stats = pool.get_stats()
            assert stats["borrowed"] == stats["connecting"] == stats["killing"] == 0, stats
            assert stats["open"] == stats["idle"] <= 2 and stats["kill_failures"] == 0, stats
            closes = sum(value for key, value in stats.items() if key.startswith("closed_"))
            assert stats["connections_made"] == closes + stats["open"], stats
            held = [await pool.get_conn(timeout=5) for _ in range(2)]
            for conn in held:
                await pool.release(conn)
        return seen

    seen = asyncio.run(asyncio.wait_for(main(), 120))
    assert set(seen) <= {"ok", "timeout"}, seen
    assert seen["timeout"] > 0 and seen["ok"] > 0, seen
