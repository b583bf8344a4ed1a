"""The pool's background work: warm-up, lifetime, keep-alive, refill, leak
warnings, orphans.

It does the slow work so borrowers do not have to: it opens the connections
that keep ``pre_create_num`` warm, retires connections past their lifetime or
idle past ``max_idle``, pings idle ones before the server's ``wait_timeout``
would drop them, and logs borrows held past ``leak_timeout``. What a round
does is the core's (``PoolCore._round_plan``, ``_refill_plan``); this module
schedules rounds. :class:`Maintenance` is the thread pool's: one daemon
thread holding only a weak reference to its pool, stopped by
``pool.close()``. The asyncio pool runs the same rounds from a task
(``aio.py``), with the same :class:`Schedule`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import weakref
from typing import Any, Callable, Dict, Protocol, Tuple

from . import _warmup

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


class Maintenance:
    def __init__(self, pool: Maintained) -> None:
        self._pool_ref: Callable[[], Any] = weakref.ref(pool)
        self._event = threading.Event()
        self._stopping = False
        self._schedule = Schedule()
        self._thread = threading.Thread(target=self._loop, name=f"pymysqlpool-maintenance-{pool.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._event.set()

    def stop(self) -> None:
        self._stopping = True
        self._event.set()
        if self._thread is not threading.current_thread() and self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def _loop(self) -> None:
        while not self._stopping:
            pool = self._pool_ref()
            if pool is None or pool._closed:
                return
            try:
                self.run_once(pool)
            except BaseException:  # never let the thread die (even an injected exception): log and go on
                logger.exception("pool %r: maintenance round failed", pool.name)
            tick = pool._maintenance_tick()
            del pool  # do not keep the pool alive while sleeping
            self._event.wait(tick)
            self._event.clear()

    def run_once(self, pool: Maintained) -> None:
        pool._run(pool._round_plan(self._schedule.orphans))
        self._refill(pool)

    def _refill(self, pool: Maintained) -> None:
        """Open what the pool wants, up to ``MAX_AT_ONCE`` at a time (a
        restart empties the pool at once); failures back off."""
        schedule = self._schedule
        if not schedule.refill_due():
            return
        wanted = pool._refill_wanted()
        if wanted <= 0:
            return
        try:
            workers = min(wanted, _warmup.MAX_AT_ONCE)
            _warmup.run(lambda: bool(pool._run(pool._refill_plan())), workers, f"pymysqlpool-refill-{pool.name}")
        except Exception as exc:
            schedule.refill_failed(pool.name, exc)
            return
        schedule.refill_ok()
