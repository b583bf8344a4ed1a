"""A borrower interrupted in the middle of an answer never passes its rows on.

The interrupt is a plain exception raised by a signal handler (what a
signal-based timeout does) while PyMySQL reads a 20 000-row result. Whatever
way the connection goes back -- ``finally: release()``, a ``with`` block,
``conn.close()`` -- the next borrower of the only connection must get its own
answer, and the half-read connection must have been closed, not reused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pymysql.cursors
import pytest

from pymysqlpool import ConnectionPool
from support.interrupts import raise_after
from support.shells import is_closed
from support.waiting import wait_until

pytestmark = pytest.mark.server

BIG = "SELECT seq, REPEAT('x', 60) FROM seq_1_to_20000"
CURSORS = {
    "Cursor": pymysql.cursors.Cursor,
    "DictCursor": pymysql.cursors.DictCursor,
    "SSCursor": pymysql.cursors.SSCursor,
    "SSDictCursor": pymysql.cursors.SSDictCursor,
}


class SignalTimeout(Exception):
    """What a signal-based timeout library raises in the middle of a call."""


def _read_all(conn: Any, cursor_class: Any) -> None:
    cur = conn.cursor(cursor_class)
    cur.execute(BIG)
    for _ in cur:  # buffered: already read by execute; unbuffered: read here
        pass


def _mid_answer(conn: Any) -> bool:
    raw = conn.raw
    return bool(raw._exchanging or (raw._result is not None and raw._result.unbuffered_active))


def _closed_mid_answer(pool: ConnectionPool) -> int:
    """Connections closed on return because an answer was cut: left unread
    (closed_unread) or, when the signal hit PyMySQL inside recv(), already
    closed by PyMySQL itself (closed_broken)."""
    stats = pool.get_stats()
    return int(stats["closed_unread"] + stats["closed_broken"])


def _interrupt_mid_answer(pool: ConnectionPool, cursor_class: Any, give_back: str) -> None:
    """Borrow, start the big read, interrupt it inside the answer, give the
    connection back as ``give_back`` says. Retries (bounded) until the signal
    landed inside the answer rather than before or after it."""
    with pool.connection() as probe:
        started = time.perf_counter()
        _read_all(probe, cursor_class)
        full = time.perf_counter() - started
    for attempt in range(30):
        delay = full * (0.2 + 0.5 * (attempt % 5) / 5)
        conn = pool.get_conn()
        landed = False
        try:
            if give_back == "with block":
                with conn, raise_after(delay, SignalTimeout):
                    _read_all(conn, cursor_class)
            else:
                try:
                    with raise_after(delay, SignalTimeout):
                        _read_all(conn, cursor_class)
                finally:
                    landed = _mid_answer(conn)
                    if give_back == "finally: release()":
                        pool.release(conn)
                    else:
                        conn.close()
        except SignalTimeout:
            if give_back == "with block":
                landed = _closed_mid_answer(pool) > 0
            if landed:
                return
        if not conn.returned:
            pool.release(conn)
    pytest.fail("the signal never landed inside the answer in 30 tries")


@pytest.mark.parametrize("give_back", ["finally: release()", "with block", "conn.close()"])
@pytest.mark.parametrize("cursor_name", list(CURSORS))
def test_interrupted_fetch_is_never_lent_again(
    make_pool: Callable[..., ConnectionPool], give_back: str, cursor_name: str
) -> None:
    pool = make_pool(maxsize=1, validation_interval=60)
    _interrupt_mid_answer(pool, CURSORS[cursor_name], give_back)
    assert _closed_mid_answer(pool) == 1
    # Its session is killed in the background (kill_on_abandon); the slot counts until then.
    assert wait_until(lambda: pool.get_stats()["killing"] == 0, timeout=10)
    stats = pool.get_stats()
    assert stats["open"] == stats["idle"] and stats["borrowed"] == 0
    # The only slot is free and the next borrower gets its own answer.
    with pool.connection(timeout=5) as conn, conn.cursor() as cur:
        cur.execute("SELECT 'B'")
        assert cur.fetchall() == (("B",),)
        cur.execute("SELECT 1 + 1")
        assert cur.fetchall() == ((2,),)


@pytest.mark.parametrize("cursor_name", ["SSCursor", "SSDictCursor"])
def test_unbuffered_rows_left_unread_are_not_drained_on_return(
    make_pool: Callable[..., ConnectionPool], cursor_name: str
) -> None:
    """Breaking out of an unbuffered read and returning costs a reconnect,
    never reading 20 000 rows on the next borrower's time (or its rows)."""
    pool = make_pool(maxsize=1)
    conn = pool.get_conn()
    cur = conn.cursor(CURSORS[cursor_name])
    cur.execute(BIG)
    assert cur.fetchone() is not None
    raw = conn.raw
    pool.release(conn)
    assert pool.get_stats()["closed_unread"] == 1
    # Closed, and its result told so: PyMySQL would otherwise try to read the
    # rest from the closed socket when the result is garbage-collected.
    assert is_closed(raw) and not raw._result.unbuffered_active
    with pool.connection(timeout=5) as again, again.cursor() as cur2:
        cur2.execute("SELECT 'mine'")
        assert cur2.fetchall() == (("mine",),)


def test_a_clean_return_still_sends_nothing_after_a_full_read(make_pool: Callable[..., ConnectionPool]) -> None:
    """The mid-answer mark is cleared at the end of every answer: a fully
    read result, a server error, a multi-statement read through nextset()."""
    pool = make_pool(maxsize=1)
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(BIG)
        assert len(cur.fetchall()) == 20000
        with pytest.raises(pymysql.err.ProgrammingError):
            cur.execute("SELECT * FROM no_such_table_here")
        raw = conn.raw
    assert not raw._exchanging
    stats = pool.get_stats()
    assert stats["closed_unread"] == 0 and stats["rollbacks_on_return"] == 0
    assert pool.available_num == 1
