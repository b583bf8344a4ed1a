"""A borrow that cannot be served ends at its own timeout (issue 9, item 6).

The bound (timeout + 1 s) is the contract, not a benchmark: a borrow that
ignored its per-call timeout and waited for the pool's 30 s default, or
returned at once without waiting, fails here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from pymysqlpool import ConnectionPool, PoolTimeout

SLACK = 1.0  # scheduling noise on a loaded machine


@pytest.mark.parametrize(
    ("pool_timeout", "borrow", "waits"),
    [
        (30.0, lambda pool: pool.get_conn(timeout=0.3), 0.3),
        (30.0, lambda pool: pool.connection(timeout=0.3), 0.3),
        (0.3, lambda pool: pool.get_conn(), 0.3),  # the inlined common case uses the pool's timeout
        (0.3, lambda pool: pool.connection(), 0.3),
        (30.0, lambda pool: pool.get_connection(retry_num=3, retry_interval=0.1), 0.3),
        (30.0, lambda pool: pool.get_conn(timeout=0), 0.0),
    ],
    ids=["get_conn(timeout)", "connection(timeout)", "get_conn()", "connection()", "get_connection", "timeout=0"],
)
def test_timed_out_borrow_ends_at_its_timeout(
    make_pool: Callable[..., ConnectionPool], pool_timeout: float, borrow: Callable[[ConnectionPool], Any], waits: float
) -> None:
    pool = make_pool(maxsize=1, timeout=pool_timeout)
    held = pool.get_conn()
    try:
        started = time.monotonic()
        with pytest.raises(PoolTimeout):
            borrow(pool)
        elapsed = time.monotonic() - started
        message = f"the borrow gave up after {elapsed:.2f} s, its timeout is {waits} s"
        assert waits - 0.05 <= elapsed < waits + SLACK, message
        assert pool.get_stats()["borrow_timeouts"] == 1
    finally:
        held.close()
