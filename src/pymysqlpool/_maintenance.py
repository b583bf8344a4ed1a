"""The pool's background work: warm-up, lifetime, keep-alive, refill, leak
warnings, orphans.

It does the slow work so borrowers do not have to: it opens the connections
that keep ``pre_create_num`` warm, retires connections past their lifetime or
idle past ``max_idle``, pings idle ones before the server's ``wait_timeout``
would drop them, and logs borrows held past ``leak_timeout``. What a round
does is the core's (``PoolCore._round_plan``, ``_refill_plan``); when rounds
run, when a refill is due and how a failure backs off is :func:`rounds`,
once for both shells. Its drivers only carry out its steps:
:class:`Maintenance`, the thread pool's daemon thread, and
:class:`TaskMaintenance`, the asyncio pool's task on the pool's loop. Either
holds only a weak reference to its pool between rounds, so that the pool
can be collected, and is stopped by ``pool.close()``. Touches no state of
the pool's: it calls the core's plans through the shell's runner.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import threading
import time
import weakref
from typing import Any, Callable, Dict, Generator, Optional, Protocol, Tuple, Type

from . import _warmup
from ._signals import Latch, Wakeup, start_thread

logger = logging.getLogger("pymysqlpool")

_BACKOFF_FIRST = 0.1
_BACKOFF_CAP = 30.0


class Maintained(Protocol):
    """What maintenance needs of a pool: the core's plans, and a way to run them."""

    name: str

    @property
    def _closed(self) -> bool: ...  # read-only: the core's lifecycle state says it

    def _run(self, plan: Any) -> Any: ...

    def _round_plan(self, seen: Dict[Any, Tuple[Any, float]]) -> Any: ...

    def _refill_plan(self) -> Any: ...

    def _refill_wanted(self) -> int: ...

    def _maintenance_tick(self) -> float: ...


class Schedule:
    """What maintenance remembers between rounds: orphan candidates, and the
    back-off of a refill that failed."""

    __slots__ = ("backoff", "orphans", "retry_at")

    def __init__(self) -> None:
        self.orphans: Dict[Any, Tuple[Any, float]] = {}  # see PoolCore._reconcile_plan
        self.backoff = 0.0
        self.retry_at = 0.0

    def refill_due(self) -> bool:
        return time.monotonic() >= self.retry_at

    def refill_failed(self, name: str, exc: BaseException) -> None:
        """Back off exponentially (with jitter) before the next refill."""
        self.backoff = min(max(self.backoff * 2, _BACKOFF_FIRST), _BACKOFF_CAP)
        pause = self.backoff * (0.5 + random.random() / 2)
        self.retry_at = time.monotonic() + pause
        logger.warning("pool %r: could not open a connection (%s); next try in %.2f s", name, exc, pause)

    def refill_ok(self) -> None:
        self.backoff = 0.0


# What rounds() asks its driver to do: (step, pool or None, argument).
ROUND = 0  # run the core's plan (the argument) with the pool's runner
REFILL = 1  # open connections, the argument's number at a time (_warmup); raises the first error
PAUSE = 2  # sleep up to the argument's seconds, or until woken
END = 3  # the pool was closed or collected: the driver ends

Step = Tuple[int, Any, Any]


def rounds(
    pool_ref: Callable[[], Any], schedule: Schedule, survive: Type[BaseException]
) -> Generator[Step, None, None]:
    """The maintenance loop: a round of the core, then a refill if one is
    due, then a pause of the pool's tick; ends once the pool is closed or
    collected. The driver throws a step's error back in: a failed refill
    backs off, any other ``survive`` error is logged and the loop goes on
    (the thread survives any; the task ends on its cancellation). The pool
    is not referenced across a pause."""
    while True:
        pool = pool_ref()
        if pool is None or pool._closed:
            return
        try:
            yield (ROUND, pool, pool._round_plan(schedule.orphans))
            if schedule.refill_due():
                wanted = pool._refill_wanted()
                if wanted > 0:
                    try:
                        yield (REFILL, pool, min(wanted, _warmup.MAX_AT_ONCE))
                    except Exception as exc:
                        schedule.refill_failed(pool.name, exc)
                    else:
                        schedule.refill_ok()
        except GeneratorExit:
            raise
        except survive:  # never let maintenance die: log and go on
            logger.exception("pool %r: maintenance round failed", pool.name)
        tick = pool._maintenance_tick()
        del pool  # do not keep the pool alive while sleeping
        yield (PAUSE, None, tick)


def _advance(steps: Generator[Step, None, None], error: Optional[BaseException]) -> Step:
    """The next step of :func:`rounds`, the last step's error thrown in;
    (END, None, None) once the loop ended."""
    try:
        return steps.send(None) if error is None else steps.throw(error)
    except StopIteration:
        return (END, None, None)


class Maintenance:
    """The thread pool's maintenance: :func:`rounds` on a daemon thread."""

    def __init__(self, pool: Maintained) -> None:
        self._pool_ref: Callable[[], Any] = weakref.ref(pool)
        self._name = f"pymysqlpool-maintenance-{pool.name}"
        # Not an Event: wake() runs on borrowers' threads (a return that
        # closed a connection), and an asynchronous exception landing inside
        # an Event's Condition can leave its lock held for good, hanging every
        # later wake and stop (seen in the interrupt storm test). See _signals.
        self._wakeup = Wakeup()
        self._stopping = False
        self._schedule = Schedule()
        self._thread: Optional[threading.Thread] = None
        self._ended: Optional[Latch] = None  # waited on by stop(), not join(): see _signals

    def start(self) -> None:
        self._thread, self._ended = start_thread(self._loop, self._name)

    def wake(self) -> None:
        if threading.current_thread() is self._thread:
            return  # asked by its own round (it closed a connection): the refill that follows sees to it
        self._wakeup.set()

    def stop(self) -> None:
        self._stopping = True
        self.wake()
        ended = self._ended
        if ended is not None and self._thread is not threading.current_thread():
            ended.wait(5.0)

    def _loop(self) -> None:
        steps = rounds(self._pool_ref, self._schedule, BaseException)
        error: Optional[BaseException] = None
        while not self._stopping:
            step, pool, arg = _advance(steps, error)
            error = None
            try:
                if step == ROUND:
                    pool._run(arg)
                elif step == REFILL:
                    refill = functools.partial(_refill_step, pool)
                    _warmup.run(refill, arg, f"pymysqlpool-refill-{pool.name}")
                elif step == PAUSE:
                    self._wakeup.wait(arg)
                else:
                    return
            except BaseException as exc:  # even an injected exception: rounds() logs it
                error = exc
            del pool


def _refill_step(pool: Maintained) -> bool:
    return bool(pool._run(pool._refill_plan()))


async def _refill_task_step(pool: Maintained) -> bool:
    return bool(await pool._run(pool._refill_plan()))


class TaskMaintenance:
    """The asyncio pool's maintenance: :func:`rounds` as a task of the pool's loop."""

    def __init__(self, pool: Maintained, loop: asyncio.AbstractEventLoop) -> None:
        self._pool_ref: Callable[[], Any] = weakref.ref(pool)
        self._loop = loop
        self._thread = threading.get_ident()
        self._event = asyncio.Event()
        self._schedule = Schedule()
        self._task = loop.create_task(self._rounds(), name=f"pymysqlpool-maintenance-{pool.name}")

    def wake(self) -> None:
        # From the collector or another thread too (a proxy dropped there).
        if self._loop.is_closed():  # nothing to wake; close() from another loop cleans up
            return
        if threading.get_ident() == self._thread:
            if asyncio.current_task(self._loop) is self._task:
                return  # asked by its own round: the refill that follows sees to it
            self._event.set()
        else:
            self._loop.call_soon_threadsafe(self._event.set)

    async def stop(self) -> None:
        task = self._task
        if task is asyncio.current_task() or task.done():
            return
        task.cancel()
        await asyncio.wait({task})  # raises only if the caller itself is cancelled

    async def _rounds(self) -> None:
        steps = rounds(self._pool_ref, self._schedule, Exception)
        error: Optional[BaseException] = None
        while True:
            step, pool, arg = _advance(steps, error)
            error = None
            try:
                if step == ROUND:
                    await pool._run(arg)
                elif step == REFILL:
                    await _warmup.run_tasks(functools.partial(_refill_task_step, pool), arg)
                elif step == PAUSE:
                    await self._pause(arg)
                else:
                    return
            except Exception as exc:  # a cancellation ends the task
                error = exc
            del pool

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._event.wait(), seconds)
        except asyncio.TimeoutError:
            pass
        if _cancel_requested():  # wait_for returned a wake-up that came with a cancel (3.11)
            raise asyncio.CancelledError
        self._event.clear()


def _cancel_requested() -> bool:
    """The current task was cancelled though no CancelledError reached it:
    asyncio.wait_for() (Python 3.11) returns an inner result that completed
    together with a cancel, swallowing the cancel."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python >= 3.11
    return bool(cancelling is not None and cancelling())
