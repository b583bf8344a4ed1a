"""A proxy dropped while borrowed gives its slot back; one given back does not.

The proxy's ``__del__`` tells the pool when it is collected still holding
its slot (``slot.proxied`` is set from the borrow to the return). A proxy
given back reports nothing when it dies, even once its slot is lent again.
"""

from __future__ import annotations

import gc
from typing import Any, Callable

from pymysqlpool import ConnectionPool
from support.leaks import LeakWarnings
from support.waiting import wait_until


def test_a_proxy_dropped_while_borrowed_gives_its_slot_back(
    make_pool: Callable[..., ConnectionPool], leak_warnings: LeakWarnings
) -> None:
    pool = make_pool(maxsize=1, pre_create_num=1)
    conn = pool.get_conn()
    slot = conn._slot
    assert slot is not None and slot.proxied is True
    del conn
    assert wait_until(lambda: pool.get_stats()["leaks_reclaimed"] == 1)
    assert len(leak_warnings.messages) == 1
    again = pool.get_conn(timeout=5)  # the one slot came back (closed and dialed anew)
    pool.release(again)
    stats = pool.get_stats()
    assert stats["leaks_detected"] == 1 and stats["borrows"] == 2 and stats["returns"] == 1


def test_a_proxy_given_back_or_outlived_by_its_borrow_reports_nothing(
    make_pool: Callable[..., ConnectionPool],
) -> None:
    pool = make_pool(maxsize=1, pre_create_num=1)
    first = pool.get_conn()
    slot = first._slot
    pool.release(first)
    assert slot is not None and slot.proxied is False
    second = pool.get_conn()
    assert second._slot is slot and slot.proxied is True
    del first  # the same slot, lent again: the old proxy is nobody's leak
    gc.collect()
    kept: Any = second
    pool.release(kept)
    del second, kept
    gc.collect()
    stats = pool.get_stats()
    assert stats["leaks_detected"] == 0 and stats["leaks_reclaimed"] == 0
    assert stats["borrows"] == stats["returns"] == 2 and pool.available_num == 1
