"""The pool's one background thread: warm-up, lifetime, keep-alive, refill,
leak warnings.

It does the slow work so borrowers do not have to: it opens the connections
that keep ``pre_create_num`` warm, retires connections past their lifetime or
idle past ``max_idle``, pings idle ones before the server's ``wait_timeout``
would drop them, and logs borrows held past ``leak_timeout``. It is a daemon,
holds only a weak reference to its pool, and stops with ``pool.close()``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, List

from . import _driver
from ._slot import Slot

if TYPE_CHECKING:
    from .pool import ConnectionPool

logger = logging.getLogger("pymysqlpool")

_TICK = 1.0  # longest sleep between rounds; early wake-ups come through wake()
_BACKOFF_FIRST = 0.1
_BACKOFF_CAP = 30.0


class Maintenance:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool_ref = weakref.ref(pool)
        self._event = threading.Event()
        self._stopping = False
        self._backoff = 0.0
        self._retry_at = 0.0
        cfg = pool._config
        tick = _TICK
        for interval in (cfg.keepalive_interval, cfg.leak_timeout or 0.0, cfg.max_idle):
            if interval:
                tick = min(tick, max(interval / 4.0, 0.05))
        self._tick = tick
        self._thread = threading.Thread(target=self._run, name=f"pymysqlpool-maintenance-{pool.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._event.set()

    def stop(self) -> None:
        self._stopping = True
        self._event.set()
        if self._thread is not threading.current_thread() and self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stopping:
            pool = self._pool_ref()
            if pool is None or pool._closed:
                return
            try:
                self.run_once(pool)
            except Exception:  # never let the thread die: log and go on
                logger.exception("pool %r: maintenance round failed", pool.name)
            # A session's wait_timeout may ask for pings more often than the
            # configured interval: tick at a quarter of the shortest.
            tick = min(self._tick, max(pool._shortest_keepalive / 4.0, 0.05))
            del pool  # do not keep the pool alive while sleeping
            self._event.wait(tick)
            self._event.clear()

    # -- one round ------------------------------------------------------------

    def run_once(self, pool: ConnectionPool) -> None:
        if pool._reclaim:
            pool._drain_reclaimed()
        now = time.monotonic()
        self._report_leaks(pool, now)
        self._retire(pool, now)
        self._keepalive(pool, now)
        self._refill(pool, now)

    def _report_leaks(self, pool: ConnectionPool, now: float) -> None:
        limit = pool._config.leak_timeout
        if limit is None:
            return
        late: List[Slot] = []
        with pool._lock:
            for slot in pool._slots:
                lent = slot.borrowed_at > slot.last_used  # returned slots get last_used >= borrowed_at
                if lent and not slot.leak_reported and now - slot.borrowed_at > limit:
                    slot.leak_reported = True
                    late.append(slot)
        for slot in late:
            logger.warning(
                "pool %r: a connection has been borrowed for %.1f s (leak_timeout=%s); borrowed at:\n%s",
                pool.name,
                now - slot.borrowed_at,
                limit,
                slot.borrow_stack or "(stack not recorded)",
            )
        if late:
            with pool._lock:  # counted once logged, so a reader of the stats finds the record
                pool._stats.leaks_detected += len(late)

    def _take_idle(self, pool: ConnectionPool, pick: Callable[[Slot, int], bool]) -> List[Slot]:
        """Move the idle slots ``pick`` selects out of idle (lock taken here)."""
        taken: List[Slot] = []
        with pool._lock:
            if pool._closed:
                return taken
            keep: List[Slot] = []
            # Oldest first: idle is used LIFO, so the left end rested longest.
            for position, slot in enumerate(pool._idle):
                (taken if pick(slot, position) else keep).append(slot)
            if taken:
                pool._idle.clear()
                pool._idle.extend(keep)
                pool._held += len(taken)
        return taken

    def _retire(self, pool: ConnectionPool, now: float) -> None:
        cfg = pool._config
        idle_count = len(pool._idle)
        surplus = max(idle_count - cfg.size, 0)
        max_idle = cfg.max_idle

        def pick(slot: Slot, position: int) -> bool:
            if slot.expires <= now:
                return True
            return bool(max_idle) and position < surplus and now - slot.last_used > max_idle

        for slot in self._take_idle(pool, pick):
            reason = slot.retire or ("closed_lifetime" if slot.expires <= now else "closed_idle")
            pool._close_held(slot, reason)

    def _keepalive(self, pool: ConnectionPool, now: float) -> None:
        def pick(slot: Slot, position: int) -> bool:
            return bool(slot.keepalive) and now - slot.last_used > slot.keepalive

        timeout = pool._config.io_timeout

        def ping(raw: Any) -> None:
            _driver.ping(raw, timeout)

        for slot in self._take_idle(pool, pick):
            if pool._recheck(slot, ping, "closed_broken"):
                with pool._lock:
                    pool._stats.keepalive_pings += 1

    def _refill(self, pool: ConnectionPool, now: float) -> None:
        """Open connections until ``pre_create_num`` are open, and replace
        connections retired for age while the pool holds fewer than ``size``,
        so borrowers rarely pay for a connect. Failures back off exponentially."""
        if now < self._retry_at:
            return
        target = pool._config.pre_create_num
        keep = max(pool._config.size, target)
        while True:
            with pool._lock:
                count = pool._open + pool._connecting
                if pool._closed or count >= pool._maxsize:
                    return
                if count >= target and (not pool._replacements or count >= keep):
                    pool._replacements = 0
                    return
                if pool._replacements:
                    pool._replacements -= 1  # one dial answers one retirement
                pool._connecting += 1
            try:
                slot = pool._new_slot()
            except Exception as exc:
                with pool._lock:
                    pool._connecting -= 1
                    pool._pass_capacity()
                self._backoff = min(max(self._backoff * 2, _BACKOFF_FIRST), _BACKOFF_CAP)
                self._retry_at = time.monotonic() + self._backoff * (0.5 + random.random() / 2)
                logger.warning(
                    "pool %r: could not open a connection (%s); next try in %.2f s",
                    pool.name,
                    exc,
                    self._retry_at - time.monotonic(),
                )
                return
            self._backoff = 0.0
            with pool._lock:
                pool._connecting -= 1
                if pool._closed:
                    closing = True
                else:
                    closing = False
                    pool._open += 1
                    pool._slots.add(slot)
                    pool._put_back(slot, time.monotonic())
            if closing:
                _driver.close(slot.raw)
                return
