"""After a server restart the maintenance thread finds the dead idle
connections (keep-alive) and reopens pre_create_num of them, up to 8 at a
time: the server then holds exactly that many sessions of the pool, and the
pool's books agree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from _faultkit import assert_consistent, create_user, session_ids, user_kwargs

from support.throwaway_mariadb import ThrowawayMariaDB
from support.waiting import wait_until

pytestmark = pytest.mark.faults


def test_refill_after_a_restart_reopens_exactly_pre_create_num(
    fresh_server: ThrowawayMariaDB, make_pool: Callable[..., Any]
) -> None:
    create_user(fresh_server, "u_refill")
    pool = make_pool(maxsize=24, size=16, pre_create_num=16, keepalive_interval=0.3, connect_timeout=2,
                     **user_kwargs(fresh_server, "u_refill"))  # fmt: skip
    assert len(session_ids(fresh_server, "u_refill")) == 16
    fresh_server.restart()

    def refilled() -> bool:
        stats = pool.get_stats()
        return stats["closed_broken"] >= 16 and stats["idle"] == 16

    assert wait_until(refilled, timeout=30), pool.get_stats()
    assert wait_until(lambda: len(session_ids(fresh_server, "u_refill")) == 16, timeout=10)
    # Every 0.3 s a keepalive round holds the connections it pings, neither idle nor
    # borrowed (on a loaded machine for a while): the gauges are compared between rounds.
    consistent: list[dict[str, Any]] = []

    def between_rounds() -> bool:
        try:
            consistent.append(assert_consistent(pool))
        except AssertionError:
            return False
        return True

    assert wait_until(between_rounds, timeout=10), pool.get_stats()
    stats = consistent[-1]
    assert (stats["open"], stats["connecting"], stats["closed_broken"], stats["connections_made"]) == (16, 0, 16, 32)
    with pool.connection() as conn:  # and they are alive
        conn.cursor().execute("SELECT 1")
