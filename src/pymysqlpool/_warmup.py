"""Open many connections at once, a bounded number at a time.

A connect is mostly waiting (TCP, handshake, authentication round trips), so
warming up 50 connections one after the other wastes most of the time.
:func:`run` calls a step function on a few threads until it says there is
nothing left to do, :func:`run_tasks` awaits it from a few tasks (the
asyncio pool's form of the same rule); the step itself decides, under the
pool's lock, whether one more connection is wanted, so the books stay exact
however many run. Used by both pools' prefill and by the maintenance's refill.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, List

from ._signals import Latch, start_thread

# Enough to overlap the round trips of a connect; few enough not to swamp a
# server that is just coming back up.
MAX_AT_ONCE = 8


def run(step: Callable[[], bool], workers: int, name: str) -> None:
    """Call ``step()`` on ``workers`` threads (this one included) until it
    returns False, then return; re-raise the first error once every thread
    has stopped.

    The first step runs alone: a wrong password or a server that is down
    then costs one failed attempt, not ``workers``, and whatever the first
    connect sets up once (the pool's TLS context) is ready for the others.
    After an error no thread starts another step. An interrupt of the calling
    thread (KeyboardInterrupt) is re-raised at once, without waiting: the
    other threads stop after their current step, which must then clean up
    after itself.
    """
    if not step():
        return
    errors: List[BaseException] = []
    # Not a threading.Event, nor Thread.join(): see _signals (the caller may
    # be interrupted while it waits, the helpers set the flag on error).
    stop = Latch()

    def loop() -> None:
        try:
            _steps(step, stop)
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    ended: List[Latch] = []
    try:
        for i in range(1, workers):
            ended.append(start_thread(loop, f"{name}-{i}")[1])
        _steps(step, stop)
    except Exception as exc:  # a step failed here, or no thread could be started
        errors.append(exc)
        stop.set()
    except BaseException:
        stop.set()
        raise
    try:
        for latch in ended:
            latch.wait()
    except BaseException:  # interrupted waiting: the others stop after their current step
        stop.set()
        raise
    if errors:
        raise errors[0]


def _steps(step: Callable[[], bool], stop: Latch) -> None:
    while not stop.is_set() and step():
        pass


async def run_tasks(step: Callable[[], Awaitable[Any]], workers: int) -> None:
    """:func:`run`'s rule on tasks: await ``step()`` from ``workers`` tasks
    until it returns False; the first step alone; after an error no task
    starts another step, and the first error is raised once all have
    stopped. A cancellation cancels them all (``gather``) and is raised."""
    if workers <= 0 or not await step():
        return
    errors: List[BaseException] = []

    async def loop() -> None:
        try:
            while not errors and await step():
                pass
        except Exception as exc:
            errors.append(exc)

    await asyncio.gather(*(loop() for _ in range(workers)))
    if errors:
        raise errors[0]
