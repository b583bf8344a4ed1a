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

from typing import Any, Callable, Optional

from ._core import WAIT, Plan

__all__ = ["close_plan", "wait_plan"]


def _until(core: Any, done: Callable[[], bool], deadline: float) -> Plan:
    """Until ``done()`` (True) or ``deadline`` passed (False). The test and the
    watcher's registration are made under the pool lock, which every change
    of the counts holds: no wake-up is lost between them."""
    while True:
        with core._lock:
            if done():
                return True
            now = core._clock()
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
    while not core._warm_enough(limit, deadline):
        yield from _until(core, lambda: core._open >= target or core._closed, deadline)


def close_plan(core: Any, grace: Optional[float]) -> Plan:
    """close(timeout) once the pool is shut and its idle connections closed:
    wait for the kills in flight (each ends by its own bound), then, with a
    ``grace``, up to that long for borrowed connections to come back; cut
    the sockets of those still out. Returns how many were cut."""
    yield from _until(core, lambda: not core._killing, core._kills_end())
    if grace is None:
        return 0
    yield from _until(core, lambda: not core._open, core._clock() + grace)
    return int(core._interrupt_late(grace))
