"""Waiting on the pool's counts: ``close(timeout)`` and ``wait()`` as plans.

Both shells run them with their one plan runner: a plan yields WAIT on a
waiter of the shell's kind (a thread's lock, a task's future), registered as
a watcher of the pool's wait queue, which the core wakes whenever a
connection is counted open or stops being counted (closed, or its kill
ended) and when the pool closes. No polling: a caller sleeps until the count
it waits for may have changed, or until its deadline. Touches nothing of the
core's books; reads its counts and calls its closing steps.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

from ._plans import WAIT, Plan

__all__ = ["close_plan", "wait_plan"]

_monotonic = time.monotonic  # a WAIT's timeout is real seconds, whatever clock the core was given
_PAST = float("-inf")


def _until(core: Any, done: Callable[[], bool], seconds: float) -> Plan:
    """Until ``done()`` (True) or ``seconds`` passed (False). The test and the
    watcher's registration are made under the pool lock, which every change
    of the counts holds: no wake-up is lost between them."""
    deadline = _monotonic() + seconds
    while True:
        with core._lock:
            if done():
                return True
            now = _monotonic()
            if now >= deadline:
                return False
            watcher = core._waiter(now)
            core._waiters.watchers.append(watcher)
        yield (WAIT, watcher, deadline - now)


def wait_plan(core: Any, limit: float) -> Plan:
    """wait(): until ``pre_create_num`` connections are open; ``PoolTimeout``
    (naming the last connect error) after ``limit`` seconds, ``PoolClosed``
    if the pool is closed (see ``PoolCore._warm_enough``)."""
    target = core._config.pre_create_num
    deadline = core._clock() + limit
    timed_out = False
    while not core._warm_enough(limit, _PAST if timed_out else deadline):
        woken = yield from _until(core, lambda: core._open >= target or core._closed, deadline - core._clock())
        timed_out = not woken


def close_plan(core: Any, grace: Optional[float]) -> Plan:
    """close(timeout) once the pool is shut and its idle connections closed:
    wait for the kills in flight (each ends by its own bound), then, with a
    ``grace``, up to that long for borrowed connections to come back; cut
    the sockets of those still out. Returns how many were cut."""
    yield from _until(core, lambda: not core._killing, core._kills_end() - core._clock())
    if grace is None:  # (a pool never opened has nothing out: cuts nothing below)
        return 0
    yield from _until(core, lambda: not core._open, grace)
    return int(core._interrupt_late(grace))
