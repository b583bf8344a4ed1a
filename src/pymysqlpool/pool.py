"""ConnectionPool: slots, borrowing, returning, closing.

One lock guards the pool's state. Nothing that waits on the network ever runs
with it held: a borrower reserves a slot under the lock and dials outside it,
so the count of connections can never pass ``maxsize`` and a slow connect
never blocks other borrowers.

Invariants, true whenever the lock is free::

    len(idle) + borrowed + held_by_maintenance == open
    open + connecting <= maxsize
    idle is empty while anyone waits
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import traceback
from collections import deque
from types import TracebackType
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Type

from . import _driver, _forking, _warmup
from ._config import PoolConfig, build, describe
from ._maintenance import Maintenance
from ._slot import Slot
from ._tls import TlsContexts
from ._waiting import DIAL, Grant, Waiter, WaitQueue
from .connection import PooledConnection
from .errors import PoolClosed, PoolTimeout, ReturnConnectionToPoolError
from .stats import Counters, Number

__all__ = ["ConnectionPool"]

logger = logging.getLogger("pymysqlpool")

_monotonic = time.monotonic
_INF = float("inf")
_LIFETIME_JITTER = 0.05  # retire up to 5 % early so a batch does not expire at once
_BACKOFF_FIRST = 0.05
_BACKOFF_CAP = 2.0
_FLUSH_AFTER = 3  # validation failures in one borrow before the other suspects are closed unpinged


class ConnectionPool:
    """A thread-safe pool of PyMySQL connections.

    ``size``, ``maxsize``, ``name``, ``pre_create_num``, ``con_lifetime`` and
    ``autocommit`` keep their pymysql-pool 0.5.0 meaning and position; every
    other keyword is passed to ``pymysql.connect()``. See the parameter
    reference in ``docs/parameters.md``.
    """

    def __init__(
        self,
        size: Optional[int] = None,
        maxsize: int = 100,
        name: Optional[str] = None,
        pre_create_num: int = 0,
        con_lifetime: float = 3600,
        autocommit: bool = True,
        *,
        pool_name: Optional[str] = None,
        timeout: float = 30.0,
        validation_interval: float = 0.5,
        keepalive_interval: Optional[float] = 60.0,
        max_idle: float = 600.0,
        leak_timeout: Optional[float] = None,
        reset_session: bool = False,
        configure: Optional[Callable[[Any], None]] = None,
        check: Optional[Callable[[Any], Any]] = None,
        connection_factory: Optional[Callable[..., Any]] = None,
        **connect_kwargs: Any,
    ) -> None:
        self._config: PoolConfig = build(
            size=size,
            maxsize=maxsize,
            name=name,
            pool_name=pool_name,
            pre_create_num=pre_create_num,
            con_lifetime=con_lifetime,
            autocommit=autocommit,
            timeout=timeout,
            validation_interval=validation_interval,
            keepalive_interval=keepalive_interval,
            max_idle=max_idle,
            leak_timeout=leak_timeout,
            reset_session=reset_session,
            configure=configure,
            check=check,
            connection_factory=connection_factory,
            connect_kwargs=connect_kwargs,
        )
        cfg = self._config
        self.name: str = cfg.name
        self._maxsize = cfg.maxsize
        self._autocommit = cfg.autocommit
        self._window = cfg.validation_interval
        self._lifetime = cfg.con_lifetime
        self._track_borrows = cfg.leak_timeout is not None
        # Any reset work on return: the clean fast path is skipped when set.
        self._always_reset = cfg.reset_session
        self._lock = threading.Lock()
        self._idle: Deque[Slot] = deque()
        self._slots: Set[Slot] = set()  # every open connection, idle or not
        self._waiters = WaitQueue()
        self._open = 0
        self._connecting = 0
        self._held = 0  # open slots neither idle nor lent: being cleaned, pinged or closed
        self._closed = False
        self._generation = 0
        # Idle slots last seen alive before this moment are pinged before use:
        # one dead connection may mean the server restarted.
        self._suspect_since = -_INF
        self._ever_connected = False
        self._replacements = 0  # connections retired for age, to be replaced in the background
        self._shortest_keepalive = _INF
        self._reclaim: Deque[Slot] = deque()
        self._stats = Counters()
        self._tls = TlsContexts()  # built once here, not by PyMySQL on every connect
        self._maintenance: Optional[Maintenance] = None
        _forking.register(self)
        self._prefill()

    # -- public properties --------------------------------------------------

    @property
    def size(self) -> int:
        """Idle connections kept beyond ``max_idle`` (0.5.0's "normal size")."""
        return self._config.size

    @property
    def maxsize(self) -> int:
        """The most connections open at once."""
        return self._maxsize

    @property
    def available_num(self) -> int:
        """Idle connections ready to lend now."""
        return len(self._idle)

    @property
    def total_num(self) -> int:
        """Connections open now: idle + borrowed."""
        return self._open

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def timeout(self) -> float:
        return self._config.timeout

    def __repr__(self) -> str:
        return (
            f"<ConnectionPool {self.name!r} {describe(self._config)} open={self._open}"
            f" idle={len(self._idle)} maxsize={self._maxsize}{' closed' if self._closed else ''}>"
        )

    # -- borrowing ----------------------------------------------------------

    def get_conn(self, timeout: Optional[float] = None) -> PooledConnection:
        """Borrow a connection, waiting up to ``timeout`` seconds (default:
        the pool's ``timeout``) when all ``maxsize`` are in use.

        ``pool.connection()`` is the same call, named for ``with`` blocks: the
        connection goes back when the block ends (rolled back if it raised).
        """
        if timeout is not None or self._reclaim or self._track_borrows:
            return PooledConnection(self, self._acquire(timeout, False))
        # The common case inlined: an idle connection used within the
        # validation window, neither expired nor suspect, needs no check.
        lock = self._lock
        lock.acquire()
        if self._idle:
            slot = self._idle.pop()
            self._stats.borrows += 1
            lock.release()
            now = _monotonic()
            last_used = slot.last_used
            if now - last_used <= self._window and slot.expires > now and last_used >= self._suspect_since:
                slot.borrowed_at = now
                return PooledConnection(self, slot)
            return PooledConnection(self, self._acquire_slow(slot, None, False))
        lock.release()
        return PooledConnection(self, self._acquire_slow(None, None, False))

    connection = get_conn

    def get_connection(
        self, retry_num: int = 3, retry_interval: float = 0.1, pre_ping: bool = False
    ) -> PooledConnection:
        """0.5.0 API: wait up to ``retry_num * retry_interval`` seconds.

        ``retry_num`` is capped at 10 as in 0.5.0; ``pre_ping=True`` pings the
        connection before lending it whatever its idle time.
        """
        retries = min(_build_int("retry_num", retry_num), 10)
        interval = _build_seconds("retry_interval", retry_interval)
        return PooledConnection(self, self._acquire(retries * interval, pre_ping))

    def _acquire(self, timeout: Optional[float], force_check: bool) -> Slot:
        """Every borrow that is not get_conn()'s inlined common case."""
        if timeout is not None:
            _build_seconds("timeout", timeout)
        if self._reclaim:
            self._drain_reclaimed()
        return self._acquire_slow(None, timeout, force_check)

    def _acquire_slow(self, first: Optional[Grant], timeout: Optional[float], force_check: bool) -> Slot:
        wait = self._config.timeout if timeout is None else _build_seconds("timeout", timeout)
        deadline = _monotonic() + wait
        grant = first
        delay = _BACKOFF_FIRST
        rejected = 0
        while True:
            if grant is None:
                grant = self._reserve(deadline)
            if grant is DIAL:
                slot = self._dial_for_borrower(deadline, delay)
                if slot is not None:
                    return slot
                # A transient connect failure: back off without holding the
                # right to dial, then queue again, so a connection returned
                # meanwhile (or a waiter's turn) is not missed.
                time.sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, _BACKOFF_CAP)
                grant = None
                continue
            assert isinstance(grant, Slot)
            if self._validate(grant, force_check):
                self._mark_borrowed(grant, _monotonic())
                return grant
            grant = None
            rejected += 1
            if rejected == _FLUSH_AFTER:
                # Several dead in a row: the server most likely restarted.
                # Close the other suspects unpinged; this borrow dials anew.
                self._flush_suspects()
            if rejected > 4 * self._maxsize + 8:  # bound the work of one borrow
                with self._lock:
                    self._stats.borrow_timeouts += 1
                raise PoolTimeout(f"pool {self.name!r}: no healthy connection after {rejected} validation failures")

    def _reserve(self, deadline: float) -> Grant:
        """Take an idle slot, a right to dial, or queue until one is handed over."""
        with self._lock:
            if self._closed:
                self._stats.borrow_errors += 1
                raise PoolClosed(f"pool {self.name!r} is closed")
            if self._idle:
                self._stats.borrows += 1
                return self._idle.pop()
            if self._open + self._connecting < self._maxsize:
                self._connecting += 1
                self._stats.borrows += 1
                return DIAL
            waiter = Waiter(_monotonic())
            self._waiters.push(waiter)
            self._stats.borrows_waited += 1
        try:
            woken = waiter.wait(deadline - waiter.since)
        except BaseException:  # KeyboardInterrupt and the like: leave nothing behind
            self._withdraw(waiter)
            raise
        if not woken:
            with self._lock:
                if self._waiters.withdraw(waiter):
                    self._stats.borrow_timeouts += 1
                    self._stats.borrow_wait_ms += (_monotonic() - waiter.since) * 1000.0
                    raise PoolTimeout(
                        f"pool {self.name!r}: no connection available within"
                        f" {max(deadline - waiter.since, 0.0):.3g} s (maxsize={self._maxsize}, all in use)"
                    )
            # Served between the timeout and the withdrawal. give() ran under
            # the pool lock, which we have held since, so this cannot block.
            waiter.wait(0)
        if waiter.error is not None:
            raise waiter.error
        assert waiter.grant is not None
        return waiter.grant

    def _withdraw(self, waiter: Waiter) -> None:
        """Take an interrupted waiter out of the queue, or pass on what it was given."""
        with self._lock:
            if self._waiters.withdraw(waiter):
                return
            grant = waiter.grant
            if grant is None:
                return  # failed by close(): nothing to pass on
            self._stats.borrows -= 1
            if isinstance(grant, Slot):
                if not self._closed:
                    self._put_back(grant, grant.last_used)
                    return
                self._held += 1
            else:
                self._connecting -= 1
                self._pass_capacity()
                return
        self._close_held(grant, "closed_on_pool_close")

    def _mark_borrowed(self, slot: Slot, now: float) -> None:
        slot.borrowed_at = now
        if self._track_borrows:
            slot.leak_reported = False
            slot.borrow_stack = _caller_stack()

    def _validate(self, slot: Slot, force: bool) -> bool:
        """Make sure a slot taken from idle can be lent; discard it if not."""
        now = _monotonic()
        if slot.expires <= now:
            self._discard_unlent(slot, "closed_lifetime")
            return False
        if not force and now - slot.last_used <= self._window and slot.last_used >= self._suspect_since:
            return True
        try:
            check = self._config.check
            if check is None:
                # Bounded by connect_timeout, not by what is left of the borrow:
                # a borrow with timeout=0 must still be able to ping.
                _driver.ping(slot.raw, self._config.io_timeout)
            elif check(slot.raw) is False:
                raise ValueError("check() returned False")
        except BaseException as exc:
            if not isinstance(exc, Exception):  # interrupted mid-ping: state unknown
                self._discard_unlent(slot, "closed_failed_check")
                raise
            logger.info("pool %r: idle connection failed validation (%s); replacing it", self.name, exc)
            self._suspect(now)
            self._discard_unlent(slot, "closed_failed_check")
            return False
        slot.last_used = _monotonic()
        return True

    def _flush_suspects(self) -> None:
        """Close every idle connection last seen alive before the suspect moment."""
        with self._lock:
            since = self._suspect_since
            doomed = [slot for slot in self._idle if slot.last_used < since]
            if not doomed:
                return
            self._idle = deque(slot for slot in self._idle if slot.last_used >= since)
            self._held += len(doomed)
        for slot in doomed:
            self._close_held(slot, "closed_failed_check")

    def _suspect(self, moment: float) -> None:
        """A connection died: check every idle one last seen alive before now."""
        if moment > self._suspect_since:
            self._suspect_since = moment

    # -- dialing ------------------------------------------------------------

    def _new_slot(self) -> Slot:
        """Open one connection (no lock held). Raises the driver's error."""
        cfg = self._config
        # Every wait of the connect is bounded by connect_timeout, whatever is
        # left of the borrow: the borrow's timeout governs queueing and retries.
        limit = cfg.io_timeout
        started = _monotonic()
        try:
            if cfg.connection_factory is not None:
                raw = cfg.connection_factory(**cfg.connect_kwargs)
            else:
                raw = _driver.connect(cfg.connect_kwargs, limit, self._tls)
            try:
                if cfg.configure is not None:
                    cfg.configure(raw)
                    if raw.server_status & 1:  # configure() left a transaction open
                        raw.commit()
                keepalive = cfg.keepalive_interval
                if keepalive and cfg.connection_factory is None:
                    server_idle = _driver.session_wait_timeout(raw)
                    if server_idle:
                        keepalive = min(keepalive, server_idle / 2.0)
            except BaseException:
                _driver.close(raw)
                raise
        except BaseException:
            with self._lock:
                self._stats.connect_errors += 1
                self._stats.connect_ms += (_monotonic() - started) * 1000.0
            raise
        now = _monotonic()
        lifetime = self._lifetime
        expires = now + lifetime * (1.0 - random.random() * _LIFETIME_JITTER) if lifetime else _INF
        if keepalive and keepalive < self._shortest_keepalive:
            self._shortest_keepalive = keepalive  # the maintenance thread ticks faster
        slot = Slot(raw, now, expires, self._generation, keepalive)
        slot.probe = _driver.make_probe(raw)
        with self._lock:
            self._stats.connections_made += 1
            self._stats.connect_ms += (now - started) * 1000.0
            self._ever_connected = True
        logger.debug("pool %r: opened a connection (%.1f ms)", self.name, (now - started) * 1000.0)
        return slot

    def _dial_for_borrower(self, deadline: float, delay: float) -> Optional[Slot]:
        """Open a connection with the right to dial this borrower holds.

        Returns None after a transient failure when there is time to retry
        (``delay`` is the back-off the caller will sleep); raises at once
        when retrying cannot help, and ``PoolTimeout`` when time is up.
        """
        try:
            slot = self._new_slot()
        except BaseException as exc:
            if not isinstance(exc, Exception):
                self._unreserve("borrow_errors")
                raise
            fatal = _driver.is_fatal_connect_error(exc) or not self._ever_connected
            if not (fatal or self._closed) and _monotonic() + delay < deadline:
                self._unreserve(None)
                logger.info("pool %r: connecting failed (%s); retrying in %.2f s", self.name, exc, delay)
                return None
            logger.warning("pool %r: cannot connect to %s: %s", self.name, describe(self._config), exc)
            if fatal or self._closed:
                self._unreserve("borrow_errors")
                raise
            self._unreserve("borrow_timeouts")
            raise PoolTimeout(
                f"pool {self.name!r}: could not connect to {describe(self._config)} before the borrow timeout: {exc}"
            ) from exc
        with self._lock:
            closed = self._closed
            if not closed:
                self._connecting -= 1
                self._open += 1
                self._slots.add(slot)
        if closed:
            _driver.close(slot.raw)
            self._unreserve("borrow_errors")
            raise PoolClosed(f"pool {self.name!r} is closed")
        self._mark_borrowed(slot, _monotonic())
        if self._maintenance is None:
            self._ensure_maintenance()
        return slot

    def _unreserve(self, outcome: Optional[str]) -> None:
        """Give back a right to dial that was not used (lock not held); the
        borrow it was counted as did not happen, ``outcome`` says why."""
        with self._lock:
            self._connecting -= 1
            self._stats.borrows -= 1
            if outcome is not None:
                setattr(self._stats, outcome, getattr(self._stats, outcome) + 1)
            self._pass_capacity()

    def _pass_capacity(self) -> None:
        """A slot became free: the oldest waiter may dial (lock held)."""
        if self._waiters and not self._closed and self._open + self._connecting < self._maxsize:
            self._connecting += 1
            self._hand_over(DIAL)

    # -- returning ----------------------------------------------------------

    def release(self, conn: PooledConnection, failed: bool = False) -> None:
        """Give a borrowed connection back.

        Rolls back an open transaction and restores autocommit first, so the
        next borrower never sees this one's work; ``failed=True`` (what a
        ``with`` block that raised passes) rolls back in any case. Raises
        ``ReturnConnectionToPoolError`` if ``conn`` was already given back or
        belongs to another pool.
        """
        if getattr(conn, "_pool", None) is not self:  # one test for both misuses
            if not isinstance(conn, PooledConnection):
                raise ReturnConnectionToPoolError(
                    f"pool {self.name!r} can only take back the PooledConnection it lent, not {type(conn).__name__}"
                )
            raise ReturnConnectionToPoolError(
                f"this connection belongs to pool {conn._pool.name!r}, not to pool {self.name!r}"
            )
        slot = conn._slot
        if slot is None:
            raise ReturnConnectionToPoolError(f"this connection was already returned to pool {self.name!r}")
        # Judge the connection before taking the lock. The server may have
        # dropped it while it was lent without the borrower noticing (KILL,
        # restart): as on borrow, a connection not known alive within the
        # validation window is checked, here with a zero-timeout poll().
        now = _monotonic()
        probe = slot.probe
        clean = (
            not failed
            and not self._always_reset
            and not _driver.needs_reset(slot.raw, self._autocommit)
            and (now - slot.borrowed_at <= self._window or probe is None or not probe(0))
        )
        lock = self._lock
        lock.acquire()
        if conn._slot is not slot:  # another thread returned it meanwhile
            lock.release()
            raise ReturnConnectionToPoolError(f"this connection was already returned to pool {self.name!r}")
        conn._slot = None
        conn._raw = None
        self._stats.returns += 1
        if slot.generation != self._generation:
            lock.release()  # lent before a fork: the socket is the parent's
            _driver.abandon(slot.raw)
            return
        if clean and slot.expires > now and not self._closed:
            # Clean return: no round trip, straight to the oldest waiter.
            slot.last_used = now
            if self._waiters:
                self._hand_over(slot)
            else:
                self._idle.append(slot)
            lock.release()
            return
        self._held += 1  # neither idle nor lent while we clean it
        lock.release()
        self._return_slow(slot, failed)

    def _return_slow(self, slot: Slot, failed: bool) -> None:
        raw = slot.raw
        cfg = self._config
        reason = None
        probe = slot.probe
        if _driver.is_broken(raw) or (probe is not None and probe(0)):
            reason = "closed_broken"
            self._suspect(_monotonic())
        elif self._closed:
            reason = "closed_on_pool_close"
        elif slot.expires <= _monotonic():
            reason = "closed_lifetime"
        else:
            try:
                if cfg.reset_session:
                    _driver.reset_session(raw, self._autocommit, cfg.io_timeout)
                    rolled_back = False
                elif failed or _driver.needs_reset(raw, self._autocommit):
                    rolled_back = _driver.reset(raw, self._autocommit, cfg.io_timeout)
                else:
                    rolled_back = False
            except Exception as exc:
                logger.info("pool %r: reset on return failed (%s); closing the connection", self.name, exc)
                reason = "closed_broken"
                rolled_back = False
            if reason is None:
                with self._lock:
                    if rolled_back:
                        self._stats.rollbacks_on_return += 1
                    if cfg.reset_session:
                        self._stats.session_resets += 1
                    if not self._closed:
                        self._held -= 1
                        self._put_back(slot, _monotonic())
                        return
                reason = "closed_on_pool_close"
        self._close_held(slot, reason)

    def _put_back(self, slot: Slot, now: float) -> None:
        """Hand a healthy slot to the oldest waiter or park it idle (lock held)."""
        slot.last_used = now
        if self._waiters:
            self._hand_over(slot)
        else:
            self._idle.append(slot)

    def _hand_over(self, grant: Grant) -> None:
        """Serve the oldest waiter (lock held). The waiter's books are kept
        here so that, once woken, it never has to take the lock again."""
        waiter = self._waiters.pop_oldest()
        self._stats.borrows += 1
        self._stats.borrow_wait_ms += (_monotonic() - waiter.since) * 1000.0
        waiter.give(grant)

    def _discard_unlent(self, slot: Slot, reason: str) -> None:
        """Close a slot granted to a borrower that failed validation before
        the borrower got it: the borrow it was counted for did not happen."""
        with self._lock:
            self._stats.borrows -= 1
            self._held += 1
        self._close_held(slot, reason)

    def _close_held(self, slot: Slot, reason: str) -> None:
        _driver.close(slot.raw)
        logger.debug("pool %r: closed a connection (%s)", self.name, reason)
        with self._lock:
            self._held -= 1
            self._open -= 1
            self._slots.discard(slot)
            setattr(self._stats, reason, getattr(self._stats, reason) + 1)
            if reason == "closed_lifetime":
                self._replacements += 1  # the maintenance thread opens a successor
            self._pass_capacity()
        if self._maintenance is not None:
            self._maintenance.wake()

    def _reconnect_in_place(self, conn: PooledConnection) -> None:
        """0.5.0 ``ping(reconnect=True)``: swap a dead socket for a new session."""
        slot = conn._slot
        if slot is None:
            raise conn._returned_error()
        _driver.force_close(slot.raw)
        fresh = self._new_slot()  # on failure the dead one stays, dropped on return
        with self._lock:
            self._stats.closed_broken += 1
        slot.raw = fresh.raw
        slot.created = fresh.created
        slot.expires = fresh.expires
        slot.probe = fresh.probe
        slot.keepalive = fresh.keepalive
        conn._raw = fresh.raw

    # -- leaks --------------------------------------------------------------

    def _leaked(self, slot: Slot) -> None:
        """Called from a proxy's ``__del__``: never take the lock here, the
        collector may run while this very thread holds it."""
        self._reclaim.append(slot)
        maintenance = self._maintenance
        if maintenance is not None:
            maintenance.wake()
        elif self._lock.acquire(blocking=False):
            # No thread to hand it to (closed pool): reclaim now, unless this
            # thread holds the lock, in which case the next borrow does it.
            self._lock.release()
            self._drain_reclaimed()

    def _drain_reclaimed(self) -> None:
        while True:
            try:
                slot = self._reclaim.popleft()
            except IndexError:
                return
            with self._lock:
                if slot.generation != self._generation:
                    continue
                if not slot.leak_reported:  # not already counted by leak_timeout
                    self._stats.leaks_detected += 1
                self._held += 1
            where = (
                f"; borrowed at:\n{slot.borrow_stack}"
                if slot.borrow_stack
                else " (set leak_timeout to log where it was borrowed)"
            )
            logger.warning(
                "pool %r: a borrowed connection was garbage-collected without being returned;"
                " closing it (its transaction is rolled back by the server)%s",
                self.name,
                where,
            )
            # Closing, not reusing: the borrower's state is unknown.
            self._close_held(slot, "leaks_reclaimed")

    # -- closing ------------------------------------------------------------

    def close(self) -> None:
        """Close idle connections now and borrowed ones when they come back.
        New borrows raise ``PoolClosed``. Safe to call more than once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            idle = list(self._idle)
            self._idle.clear()
            self._held += len(idle)
            self._stats.borrow_errors += len(self._waiters)
            self._waiters.fail_all(PoolClosed(f"pool {self.name!r} was closed while waiting"))
            maintenance, self._maintenance = self._maintenance, None
        if maintenance is not None:
            maintenance.stop()
        for slot in idle:
            self._close_held(slot, "closed_on_pool_close")
        self._drain_reclaimed()
        logger.debug("pool %r: closed", self.name)

    def __enter__(self) -> ConnectionPool:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    # -- stats --------------------------------------------------------------

    def get_stats(self) -> Dict[str, Number]:
        """A snapshot of the pool's gauges and counters (see docs/stats.md)."""
        with self._lock:
            return self._snapshot()

    def pop_stats(self) -> Dict[str, Number]:
        """Like :meth:`get_stats`, then reset the counters to zero."""
        with self._lock:
            snap = self._snapshot()
            self._stats = Counters()
        return snap

    def _snapshot(self) -> Dict[str, Number]:
        idle = len(self._idle)
        data: Dict[str, Number] = {
            "pool_min": self._config.pre_create_num,
            "pool_size": self._config.size,
            "pool_max": self._maxsize,
            "open": self._open,
            "idle": idle,
            "borrowed": self._open - idle - self._held,
            "connecting": self._connecting,
            "waiting": len(self._waiters),
        }
        data.update(self._stats.snapshot())
        return data

    # -- background work ----------------------------------------------------

    def _prefill(self) -> None:
        """Open ``pre_create_num`` connections now, in the constructor, up to
        ``MAX_AT_ONCE`` at a time. If one fails, all are closed and the error
        raised."""
        wanted = self._config.pre_create_num
        made: List[Slot] = []
        books = threading.Lock()
        dials = [0, 0]  # started, abandoned (the constructor failed or was interrupted)

        def step() -> bool:
            with books:
                if dials[0] >= wanted or dials[1]:
                    return False
                dials[0] += 1
            slot = self._new_slot()
            with books:
                if not dials[1]:
                    made.append(slot)
                    return True
            _driver.close(slot.raw)  # finished after the constructor gave up
            return False

        try:
            _warmup.run(step, min(wanted, _warmup.MAX_AT_ONCE), f"pymysqlpool-warmup-{self.name}")
        except BaseException:
            with books:
                dials[1] = 1
                doomed = list(made)
            for slot in doomed:
                _driver.close(slot.raw)
            raise
        with self._lock:
            self._open += len(made)
            self._slots.update(made)
            self._idle.extend(made)
        if made:
            self._ensure_maintenance()

    def _ensure_maintenance(self) -> None:
        if self._maintenance is None and not self._closed:
            with self._lock:
                if self._maintenance is None and not self._closed:
                    self._maintenance = Maintenance(self)
                    self._maintenance.start()

    def _after_fork_in_child(self) -> None:
        """The child inherits the parent's sockets: forget them unsent-to."""
        self._lock = threading.Lock()
        self._tls.after_fork()
        self._generation += 1
        for slot in self._slots:
            _driver.abandon(slot.raw)
        self._idle = deque()
        self._slots = set()
        self._reclaim = deque()
        self._waiters = WaitQueue()
        self._open = self._connecting = self._held = self._replacements = 0
        self._maintenance = None


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _caller_stack() -> str:
    """The borrower's stack, without the pool's own frames."""
    frames = [f for f in traceback.extract_stack(limit=24) if not f.filename.startswith(_PACKAGE_DIR)]
    return "".join(traceback.format_list(frames[-16:]))


def _build_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return value


def _build_seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return float(value)
