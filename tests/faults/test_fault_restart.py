"""Scenario 1: the server restarts (or crashes) under a 16-thread workload."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from _faultkit import Workload, assert_consistent, create_user, error_kinds, session_ids, user_kwargs

from support.throwaway_mariadb import ThrowawayMariaDB
from support.waiting import wait_until

pytestmark = pytest.mark.faults

WARM_OPS = 200  # successful operations before the fault, so the pool is full and busy
POST_SECONDS = 1.5  # the post-restart phase in which no borrow may fail


@pytest.mark.parametrize("how", ["restart", "crash"])
def test_server_restart_under_load(
    how: str,
    fresh_server: ThrowawayMariaDB,
    make_pool: Callable[..., Any],
    fault_report: Callable[..., None],
) -> None:
    user = f"u_{how}"
    create_user(fresh_server, user)
    pool = make_pool(
        maxsize=8,
        timeout=5,
        connect_timeout=2,
        read_timeout=10,  # a user query can never hang the test
        **user_kwargs(fresh_server, user),
    )
    load = Workload(pool, threads=16)
    load.start()
    try:
        assert wait_until(lambda: len(load.successes_after(0.0)) >= WARM_OPS, timeout=15), "workload never got going"
        fault_started = time.monotonic()
        if how == "restart":
            fresh_server.restart()  # SIGTERM: the server closes every session itself
        else:
            fresh_server.kill()  # SIGKILL: sessions die with the process
            fresh_server.start()
        back = time.monotonic()
        assert wait_until(lambda: bool(load.successes_after(back)), timeout=15), "no borrow succeeded after restart"
        first_ok = min(op.ended for op in load.successes_after(back))
        time.sleep(POST_SECONDS)
    finally:
        alive = load.stop()
    assert alive == [], f"workers hung: {alive}"

    ops = load.snapshot()
    during = [op for op in ops if op.error is not None and op.started < back]
    after = [op for op in ops if op.started >= back]
    failed_after = [op for op in after if op.error is not None]
    # The users' outage: the longest stretch in which no operation succeeded.
    ok_ends = sorted(op.ended for op in ops if op.error is None)
    outage = max((b - a for a, b in zip(ok_ends, ok_ends[1:])), default=0.0)
    fault_report(
        f"server {how} (16 threads)",
        len(during) + len(failed_after),
        first_ok - back,
        f"server down {back - fault_started:.2f} s, no success for {outage:.2f} s"
        + "".join(f"; {kinds}" for kinds in [error_kinds([op.error for op in during + failed_after])] if kinds),
    )
    assert len(after) > 0
    assert failed_after == [], f"failed after the server was back: {error_kinds([op.error for op in failed_after])}"

    # Every connection the pool counts is one the server has, and no more.
    assert wait_until(lambda: len(session_ids(fresh_server, user)) == pool.total_num, timeout=5), (
        f"pool counts {pool.total_num} connections, server has {len(session_ids(fresh_server, user))}"
    )
    assert_consistent(pool)
    assert pool.total_num <= 8
