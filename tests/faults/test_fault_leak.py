"""Scenario 7: a borrower drops its connection without returning it, or holds it too long."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from typing import Any

import pytest
from _faultkit import assert_consistent, connection_id, create_user, session_ids, user_kwargs

from pymysqlpool import ConnectionPool
from support.leaks import LeakWarnings
from support.throwaway_mariadb import ThrowawayMariaDB
from support.waiting import wait_until

pytestmark = pytest.mark.faults
# Through the blocking facade the borrower's stack is the loop thread's; the
# asyncio pool's own stacks and reclaim are tested in tests/server/test_async_pool.py.
STACK_WHY = "the borrower's stack as the facade shows it"


def warnings_from_pool(caplog: pytest.LogCaptureFixture, needle: str, pool: Any) -> list[str]:
    """The pool's warnings containing ``needle`` (not another test's pool, whose
    dropped connection the collector may reach during this test)."""
    return [
        message
        for record in caplog.records
        if record.name == "pymysqlpool"
        and record.levelno == logging.WARNING
        and needle in (message := record.getMessage())
        and f"pool {pool.name!r}" in message
    ]


def of_pool(messages: list[str], pool: Any) -> list[str]:
    """The messages about ``pool`` (see warnings_from_pool)."""
    return [message for message in messages if f"pool {pool.name!r}" in message]


def borrow_and_drop(pool: ConnectionPool) -> int:
    """Borrow, use, and lose the proxy without giving it back."""
    conn = pool.get_conn()
    thread_id = connection_id(conn)
    del conn
    gc.collect()
    return thread_id


@pytest.mark.threads_only(STACK_WHY)
@pytest.mark.parametrize("leak_timeout", [60.0, None])
def test_dropped_connection_is_reclaimed(
    leak_timeout: float | None,
    throwaway_server: ThrowawayMariaDB,
    make_pool: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    leak_warnings: LeakWarnings,
) -> None:
    caplog.set_level(logging.WARNING, logger="pymysqlpool")
    user = f"u_leak_dropped_{'stack' if leak_timeout else 'nostack'}"
    create_user(throwaway_server, user)
    kwargs = user_kwargs(throwaway_server, user)
    pool = make_pool(maxsize=2, timeout=5, connect_timeout=2, leak_timeout=leak_timeout, **kwargs)
    thread_id = borrow_and_drop(pool)

    # The maintenance thread (woken by the drop) or the next borrow reclaims it.
    assert wait_until(lambda: pool.total_num == 0, timeout=5), pool.get_stats()
    stats = assert_consistent(pool)
    assert stats["leaks_reclaimed"] == 1
    assert stats["leaks_detected"] == 1
    assert wait_until(lambda: thread_id not in session_ids(throwaway_server, user), timeout=5)

    messages = warnings_from_pool(caplog, "garbage-collected", pool)
    assert len(messages) == 1
    assert of_pool(leak_warnings.messages, pool) == messages  # logged and warned
    if leak_timeout is not None:
        # The borrower's stack names the code that borrowed: this test, via the helper.
        assert "borrow_and_drop" in messages[0]
        assert "test_dropped_connection_is_reclaimed" in messages[0]
    else:
        assert "set leak_timeout" in messages[0]

    # The freed slot lends again.
    with pool.connection() as conn:
        assert connection_id(conn) != thread_id


@pytest.mark.threads_only(STACK_WHY)
def test_connection_held_past_leak_timeout_is_reported(
    throwaway_server: ThrowawayMariaDB,
    make_pool: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    leak_warnings: LeakWarnings,
) -> None:
    caplog.set_level(logging.WARNING, logger="pymysqlpool")
    user = "u_leak_held"
    create_user(throwaway_server, user)
    pool = make_pool(maxsize=2, timeout=5, connect_timeout=2, leak_timeout=0.3, **user_kwargs(throwaway_server, user))
    conn = pool.get_conn()
    thread_id = connection_id(conn)
    assert wait_until(lambda: bool(warnings_from_pool(caplog, "has been borrowed for", pool)), timeout=5)
    # Reported once, not every maintenance round.
    assert not wait_until(lambda: len(warnings_from_pool(caplog, "has been borrowed for", pool)) > 1, timeout=0.5)
    (message,) = warnings_from_pool(caplog, "has been borrowed for", pool)
    assert "test_connection_held_past_leak_timeout_is_reported" in message
    assert of_pool(leak_warnings.messages, pool) == [message]  # logged and warned

    # Reported, not taken away: the holder still uses it and gives it back.
    assert connection_id(conn) == thread_id
    pool.release(conn)
    stats = assert_consistent(pool)
    assert stats["leaks_detected"] == 1
    assert stats["leaks_reclaimed"] == 0
    assert pool.total_num == pool.available_num == 1
    assert session_ids(throwaway_server, user) == {thread_id}


def test_leak_reported_then_dropped_counts_once(
    throwaway_server: ThrowawayMariaDB,
    make_pool: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    leak_warnings: LeakWarnings,
) -> None:
    """One borrow that is first held too long and then dropped is one leak:
    ``leaks_detected`` counts leaked borrows, not warnings."""
    caplog.set_level(logging.WARNING, logger="pymysqlpool")
    user = "u_leak_held_then_dropped"
    create_user(throwaway_server, user)
    pool = make_pool(maxsize=2, timeout=5, connect_timeout=2, leak_timeout=0.3, **user_kwargs(throwaway_server, user))
    conn = pool.get_conn()
    connection_id(conn)
    assert wait_until(lambda: bool(warnings_from_pool(caplog, "has been borrowed for", pool)), timeout=5)
    del conn
    gc.collect()
    assert wait_until(lambda: pool.total_num == 0, timeout=5)
    stats = assert_consistent(pool)
    assert stats["leaks_reclaimed"] == 1
    assert stats["leaks_detected"] == 1, stats
    # Two warnings for the one leak: held too long, then dropped.
    warned = of_pool(leak_warnings.messages, pool)
    assert len(warned) == 2 and "has been borrowed for" in warned[0] and "garbage-collected" in warned[1], warned
