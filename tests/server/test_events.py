"""Server tier: the events interface and use-time stats against the real MariaDB."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from server_helpers import ServerView, query

from pymysqlpool import ConnectionPool, GetConnectionFromPoolError, PoolTimeout


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Any]] = []

    def on_connect(self, raw: Any, seconds: float) -> None:
        self.calls.append(("connect", raw, seconds))

    def on_checkout(self, raw: Any, waited: float) -> None:
        self.calls.append(("checkout", raw, waited))

    def on_checkin(self, raw: Any, used: float) -> None:
        # After the rollback: the borrower's transaction is gone already.
        self.calls.append(("checkin", raw, (used, bool(raw.server_status & 1))))

    def on_close(self, raw: Any, reason: str) -> None:
        self.calls.append(("close", raw, reason))


def test_events_follow_a_real_connection(
    make_pool: Callable[..., ConnectionPool], admin: Any, server_view: ServerView, make_table: Callable[..., str]
) -> None:
    table = make_table("ev")
    rec = Recorder()
    pool = make_pool(maxsize=1, events=rec, autocommit=True)
    with pool.connection() as conn:
        lent = conn.raw
        conn.begin()
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO `{table}` (v) VALUES (1)")
        time.sleep(0.02)
    names = [c[0] for c in rec.calls]
    assert names == ["connect", "checkout", "checkin"]
    raw = rec.calls[0][1]
    assert raw is lent  # the hooks see the driver's connection itself
    assert rec.calls[0][2] > 0  # the connect took time
    used, in_trans = rec.calls[2][2]
    assert used >= 0.02 and in_trans is False
    assert query(admin, f"SELECT COUNT(*) FROM `{table}`") == ((0,),)  # rolled back before on_checkin
    stats = pool.get_stats()
    assert stats["uses"] == 1 and stats["use_ms"] >= 20.0 and stats["use_max_ms"] == stats["use_ms"]
    pool.close()
    assert rec.calls[-1] == ("close", raw, "closed_on_pool_close")
    assert server_view.settles_at(admin, 0)


@pytest.mark.threads_only("hooks are plain functions: on an event loop they cannot run statements (configure= can)")
def test_on_connect_can_configure_and_refuse_a_session(
    make_pool: Callable[..., ConnectionPool], admin: Any, server_view: ServerView
) -> None:
    class Tag:
        def on_connect(self, raw: Any, seconds: float) -> None:
            with raw.cursor() as cur:
                cur.execute("SET @tagged = 42")

    pool = make_pool(maxsize=1, events=Tag())
    with pool.connection() as conn:
        assert query(conn, "SELECT @tagged") == ((42,),)
    assert server_view.settles_at(admin, 1)


def test_a_checkout_hook_that_always_raises_ends_the_borrow_after_three_connections(
    make_pool: Callable[..., ConnectionPool], admin: Any, server_view: ServerView
) -> None:
    """A hook bug is not a connect storm: without the rule one borrow opened
    hundreds of connections a second against the server until its timeout.
    The third refusal raises the hook's error (chained) at once, and no
    session stays behind."""

    class Broken:
        def on_checkout(self, raw: Any, waited: float) -> None:
            raise RuntimeError("hook bug")

    pool = make_pool(maxsize=4, events=Broken())
    with pytest.raises(GetConnectionFromPoolError, match="on_checkout rejected 3 connections in a row") as raised:
        pool.get_conn(timeout=5)
    assert not isinstance(raised.value, PoolTimeout)
    assert isinstance(raised.value.__cause__, RuntimeError) and str(raised.value.__cause__) == "hook bug"
    stats = pool.get_stats()
    assert stats["connections_made"] == 3 and stats["closed_failed_check"] == 3
    assert stats["borrow_errors"] == 1 and stats["open"] == 0
    assert server_view.settles_at(admin, 0)
