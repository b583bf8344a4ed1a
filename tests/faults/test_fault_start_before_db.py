"""Start before the database: a pool made with open=False while its server is
down, opened, and ready once the server comes up; reconnect_failed fires when
the outage outlasts reconnect_timeout."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from pymysqlpool import PoolTimeout
from support.throwaway_mariadb import ThrowawayMariaDB


def test_pool_opened_before_its_server_is_ready_when_it_is(
    fresh_server: ThrowawayMariaDB, make_pool: Callable[..., Any], fault_report: Callable[..., None]
) -> None:
    server = fresh_server
    server.stop()
    outage = threading.Event()
    pool = make_pool(
        maxsize=3,
        pre_create_num=2,
        open=False,
        connect_timeout=2,
        reconnect_timeout=0.3,
        reconnect_failed=lambda pool: outage.set(),
        **server.connect_kwargs(),
    )
    pool.open()
    with pytest.raises(PoolTimeout, match=r"last connect error.*2003"):
        pool.wait(0.5)
    assert outage.wait(10)
    server.start()
    pool.wait(30)
    assert pool.total_num >= 2
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    fault_report("pool opened before its server", 0, None, "wait() returned once the server was up")
