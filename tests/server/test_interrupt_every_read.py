"""An interrupt at every read of an exchange that follows unread result sets.

A borrower leaves result sets of a multi-statement answer unread, then sends
another statement through another cursor (a cursor drains its own leftovers
through ``nextset()``; a new one leaves that to the connection). The driver reads the leftovers first (through
``next_result()``), then sends the new command, then reads its answer. An
interrupt (a signal-based timeout, a KeyboardInterrupt; in asyncio a
cancellation) may land at any of those reads. Whichever read it lands in, the
connection goes back to the pool, and the next borrower of the only slot must
get its own answer -- never the interrupted borrower's (issue 18, item 0: the
drain cleared the mid-answer mark, the new answer stayed on the wire, and the
connection was parked as clean).

The interrupt is injected deterministically: the k-th packet read of the
second statement raises, for every k until the statement completes unharmed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pymysql.cursors
import pytest
from pymysql.constants import CLIENT
from server_helpers import ServerView

from pymysqlpool import AsyncConnectionPool, ConnectionPool

pytestmark = pytest.mark.server

LEFTOVERS = {
    "one set left": "SELECT 'first'; SELECT 'left over'",
    "two sets left": "SELECT 'first'; SELECT 'left 1' UNION ALL SELECT 'left 2'; SELECT 'left 3'",
}
MAX_READS = 40  # more packet reads than any exchange here needs


class Interrupt(KeyboardInterrupt):
    """Stands for a signal landing inside the driver's read."""


def _arm(raw: Any, k: int, error: type[BaseException]) -> list[int]:
    """Make the ``k``-th packet read of ``raw`` raise ``error``; returns the
    read counter (its one item counts the reads made while armed)."""
    reads = [0]
    read = raw._read_packet

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        reads[0] += 1
        if reads[0] == k:
            raise error()
        return read(*args, **kwargs)

    async def interrupted_async(*args: Any, **kwargs: Any) -> Any:
        reads[0] += 1
        if reads[0] == k:
            raise error()
        return await read(*args, **kwargs)

    raw._read_packet = interrupted_async if asyncio.iscoroutinefunction(read) else interrupted
    return reads


def _disarm(raw: Any) -> None:
    raw.__dict__.pop("_read_packet", None)


@pytest.mark.threads_only("the asyncio twin below injects a cancellation instead")
@pytest.mark.parametrize("first", list(LEFTOVERS))
def test_interrupt_at_any_read_never_lends_an_answer_on(make_pool: Callable[..., ConnectionPool], first: str) -> None:
    pool = make_pool(maxsize=1, pre_create_num=1, client_flag=CLIENT.MULTI_STATEMENTS, validation_interval=60)
    landed = 0
    for k in range(1, MAX_READS):
        conn = pool.get_conn()
        raw = conn.raw
        cur = conn.cursor(pymysql.cursors.Cursor)
        cur.execute(LEFTOVERS[first])  # the first set read whole, the rest left on the wire
        reads = _arm(raw, k, Interrupt)
        try:
            conn.cursor(pymysql.cursors.Cursor).execute("SELECT 'second query'")  # a new cursor: the connection drains
            completed = True
        except Interrupt:
            completed = False
        finally:
            _disarm(raw)
            pool.release(conn)
        with pool.connection(timeout=5) as again, again.cursor() as cur2:
            cur2.execute("SELECT 'next borrower'")
            assert cur2.fetchall() == (("next borrower",),), f"interrupt at read {k} lent an answer on"
        if completed:
            assert reads[0] < k  # every read of the exchange was tried
            break
        landed += 1
    else:
        pytest.fail(f"the exchange took more than {MAX_READS} reads")
    assert landed >= 6  # leftover sets and the new answer: each read was interrupted once
    stats = pool.get_stats()
    assert stats["open"] == stats["idle"] == 1 and stats["borrowed"] == 0


@pytest.mark.parametrize("first", list(LEFTOVERS))
def test_cancel_at_any_read_never_lends_an_answer_on(server_view: ServerView, first: str) -> None:
    async def main() -> int:
        landed = 0
        async with AsyncConnectionPool(
            **{
                **server_view.connect_kwargs,
                "maxsize": 1,
                "client_flag": CLIENT.MULTI_STATEMENTS,
                "validation_interval": 60,
                "connect_timeout": 2,
            }
        ) as pool:
            for k in range(1, MAX_READS):
                conn = await pool.get_conn()
                raw = conn.raw
                cur = await conn.cursor()
                await cur.execute(LEFTOVERS[first])
                reads = _arm(raw, k, asyncio.CancelledError)
                try:
                    async with conn.cursor() as cur2:  # a new cursor: the connection drains
                        await cur2.execute("SELECT 'second query'")
                    completed = True
                except asyncio.CancelledError:
                    completed = False
                finally:
                    _disarm(raw)
                    await pool.release(conn)
                async with pool.connection(timeout=5) as again, again.cursor() as cur2:
                    await cur2.execute("SELECT 'next borrower'")
                    rows = await cur2.fetchall()
                assert rows == (("next borrower",),), f"a cancel at read {k} lent an answer on"
                if completed:
                    assert reads[0] < k
                    return landed
                landed += 1
        pytest.fail(f"the exchange took more than {MAX_READS} reads")

    landed = asyncio.run(asyncio.wait_for(main(), 60))
    assert landed >= 6
