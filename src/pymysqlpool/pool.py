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

import dataclasses
import functools
import logging
import os
import random
import threading
import time
import traceback
from collections import deque
from types import TracebackType
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Type

from . import _driver, _forking
from ._config import PoolConfig, build, describe, resolve
from ._events import Events, ResetHook, as_sequence, fire_logged
from ._lifecycle import Lifecycle
from ._maintenance import Maintenance
from ._slot import Slot
from ._waiting import DIAL, Grant, Waiter, WaitQueue
from .connection import PooledConnection
from .errors import PoolClosed, PoolTimeout, ReturnConnectionToPoolError, TooManyRequests
from .stats import Counters, Number

__all__ = ["ConnectionPool"]

logger = logging.getLogger("pymysqlpool")

_monotonic = time.monotonic
_INF = float("inf")
_LIFETIME_JITTER = 0.05  # retire up to 5 % early so a batch does not expire at once
_BACKOFF_FIRST = 0.05
_BACKOFF_CAP = 2.0
_REPLACED = ("closed_lifetime", "closed_drained")  # reasons whose connections get a successor
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
        keepalive_interval: Optional[float] = None,
        max_idle: float = 600.0,
        leak_timeout: Optional[float] = None,
        reset_session: bool = False,
        configure: Optional[Callable[[Any], None]] = None,
        check: Optional[Callable[[Any], Any]] = None,
        connection_factory: Optional[Callable[..., Any]] = None,
        events: Any = None,
        reset: Optional[Callable[[Any], Any]] = None,
        open: bool = True,
        max_waiting: Optional[int] = None,
        reconnect_timeout: float = 300.0,
        reconnect_failed: Optional[Callable[[ConnectionPool], Any]] = None,
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
        self._events = Events()
        for obj in as_sequence(events):
            self._events.add(obj)
        if reset is not None:
            if not callable(reset):
                raise TypeError(f"reset must be callable or None, got {type(reset).__name__}")
            self._events.add(ResetHook(reset))
        # Set by _refresh_events: borrows that leave get_conn's inlined path,
        # and returns that skip the clean fast path (reset work or a check-in hook).
        self._divert = False
        self._always_reset = False
        self._refresh_events()
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
        self._maintenance: Optional[Maintenance] = None
        if not isinstance(open, bool):
            raise TypeError(f"open must be True or False, got {open!r}")
        if reconnect_failed is not None and not callable(reconnect_failed):
            raise TypeError(f"reconnect_failed must be callable or None, got {type(reconnect_failed).__name__}")
        self._life = Lifecycle(
            None if max_waiting is None else _build_int("max_waiting", max_waiting),
            _build_seconds("reconnect_timeout", reconnect_timeout),
            reconnect_failed,
        )
        _forking.register(self)
        if open:
            self._prefill()
            self._life.opened = True
        else:
            self._closed = True  # lends nothing until open()

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
        if timeout is not None or self._reclaim or self._divert:
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
        events = self._events
        if events.on_checkout or events.on_timeout:
            return self._acquire_evented(timeout, force_check)
        return self._acquire_slow(None, timeout, force_check)

    def _acquire_evented(self, timeout: Optional[float], force_check: bool) -> Slot:
        """A borrow with on_checkout / on_timeout listeners: a connection a
        check-out hook rejects is closed and another one taken, never lent."""
        started = _monotonic()
        deadline = started + (self._config.timeout if timeout is None else timeout)
        events = self._events
        try:
            while True:
                slot = self._acquire_slow(None, max(deadline - _monotonic(), 0.0), force_check)
                hooks = events.on_checkout
                try:
                    for hook in hooks:
                        hook(slot.raw, _monotonic() - started)
                    return slot
                except Exception as exc:
                    logger.warning("pool %r: on_checkout rejected a connection (%s); closing it", self.name, exc)
                    self._discard_unlent(slot, "closed_failed_check")
                    if _monotonic() >= deadline:
                        with self._lock:
                            self._stats.borrow_timeouts += 1
                        raise PoolTimeout(
                            f"pool {self.name!r}: on_checkout rejected every connection until the borrow timeout: {exc}"
                        ) from exc
                except BaseException:
                    self._discard_unlent(slot, "closed_failed_check")  # interrupted inside a hook
                    raise
        except PoolTimeout:
            fire_logged(events.on_timeout, self.name, _monotonic() - started)
            raise

    # -- events -------------------------------------------------------------

    def add_events(self, obj: Any) -> None:
        """Call ``obj``'s ``on_connect``/``on_checkout``/``on_checkin``/
        ``on_close``/``on_timeout`` methods (those it has) from now on."""
        with self._lock:
            self._events.add(obj)
            self._refresh_events()

    def remove_events(self, obj: Any) -> bool:
        """Stop calling ``obj``; False if it was not added."""
        with self._lock:
            removed = self._events.remove(obj)
            self._refresh_events()
        return removed

    def _refresh_events(self) -> None:
        events = self._events
        self._divert = self._track_borrows or bool(events.on_checkout or events.on_timeout)
        self._always_reset = self._config.reset_session or bool(events.on_checkin)

    def _checked_in(self, slot: Slot) -> bool:
        """Run the check-in hooks on a returned (held) connection; False if one raised."""
        used = _monotonic() - slot.borrowed_at
        try:
            for hook in self._events.on_checkin:
                hook(slot.raw, used)
        except Exception as exc:
            logger.warning("pool %r: on_checkin failed (%s); closing the connection", self.name, exc)
            return False
        except BaseException:  # interrupted inside a hook: its state is unknown
            self._close_held(slot, "closed_broken")
            raise
        return True

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
            limit = self._life.max_waiting
            if limit is not None and len(self._waiters) >= limit:
                self._stats.borrows_rejected += 1
                raise TooManyRequests(
                    f"pool {self.name!r}: all {self._maxsize} connections in use and"
                    f" {len(self._waiters)} borrowers already waiting (max_waiting={limit})"
                )
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
            self._discard_unlent(slot, slot.retire or "closed_lifetime")
            return False
        if not force and now - slot.last_used <= self._window and slot.last_used >= self._suspect_since:
            return True
        try:
            self._check_alive(slot.raw)
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

    def _check_alive(self, raw: Any) -> None:
        """The pool's validation of an idle connection: ``check=`` or a ping.
        Raises if the connection must not be lent."""
        check = self._config.check
        if check is None:
            # Bounded by connect_timeout, not by what is left of the borrow:
            # a borrow with timeout=0 must still be able to ping.
            _driver.ping(raw, self._config.io_timeout)
        elif check(raw) is False:
            raise ValueError("check() returned False")

    def _recheck(self, slot: Slot, alive: Callable[[Any], None], reason: str) -> bool:
        """Probe a held idle slot with ``alive``; park it again, or close it
        under ``reason``. True if it was alive."""
        try:
            alive(slot.raw)
        except Exception as exc:
            logger.info("pool %r: idle connection failed a check (%s); replacing it", self.name, exc)
            self._suspect(_monotonic())
            self._close_held(slot, reason)
            return False
        with self._lock:
            if not self._closed:
                self._held -= 1
                self._put_back(slot, _monotonic())
                return True
        self._close_held(slot, "closed_on_pool_close")
        return True

    def check(self) -> int:
        """Validate every idle connection now (``check=`` or a ping) and close
        the ones that fail; returns how many were closed."""
        with self._lock:
            if self._closed:
                return 0
            slots = list(self._idle)
            self._idle.clear()
            self._held += len(slots)
        return sum(not self._recheck(slot, self._check_alive, "closed_failed_check") for slot in slots)

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
        epoch = self._life.epoch
        try:
            kwargs = resolve(cfg.connect_kwargs)  # callables (rotating passwords) evaluated now
            if cfg.connection_factory is not None:
                raw = cfg.connection_factory(**kwargs)
            else:
                raw = _driver.connect(kwargs, limit)
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
                for hook in self._events.on_connect:
                    hook(raw, _monotonic() - started)
            except BaseException:
                _driver.close(raw)
                raise
        except BaseException as exc:
            with self._lock:
                self._stats.connect_errors += 1
                self._stats.connect_ms += (_monotonic() - started) * 1000.0
            if isinstance(exc, Exception):
                self._connect_failed(exc, started)
            raise
        now = _monotonic()
        lifetime = self._lifetime
        expires = now + lifetime * (1.0 - random.random() * _LIFETIME_JITTER) if lifetime else _INF
        if keepalive and keepalive < self._shortest_keepalive:
            self._shortest_keepalive = keepalive  # the maintenance thread ticks faster
        slot = Slot(raw, now, expires, self._generation, keepalive)
        slot.probe = _driver.make_probe(raw)
        self._watch(slot)
        with self._lock:
            self._stats.connections_made += 1
            self._stats.connect_ms += (now - started) * 1000.0
            self._ever_connected = True
            self._life.failing_since = None
            if epoch != self._life.epoch:  # drain() ran while this one was dialing
                slot.doom("closed_drained")
            elif self._life.shed and self._open + self._connecting > self._maxsize:  # resize() shrank meanwhile
                self._life.shed -= 1
                slot.doom("closed_resized")
        logger.debug("pool %r: opened a connection (%.1f ms)", self.name, (now - started) * 1000.0)
        return slot

    def _connect_failed(self, exc: Exception, started: float) -> None:
        """Remember the error for wait(); call reconnect_failed once per outage
        that lasted reconnect_timeout."""
        life = self._life
        with self._lock:
            due = life.connect_failed(exc, started, _monotonic())
        if due and life.reconnect_failed is not None:
            logger.error(
                "pool %r: no connection could be opened for %.1f s: %s", self.name, life.reconnect_timeout, exc
            )
            try:
                life.reconnect_failed(self)
            except Exception:
                logger.exception("pool %r: reconnect_failed callback failed; ignored", self.name)

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
        stats = self._stats
        stats.returns += 1
        used = now - slot.borrowed_at
        stats.use_s += used
        if used > stats.use_max_s:
            stats.use_max_s = used
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
        if slot.retire is not None:
            reason = slot.retire
        elif _driver.is_broken(raw) or (probe is not None and probe(0)):
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
            if reason is None and self._events.on_checkin and not self._checked_in(slot):
                reason = "closed_broken"
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
            if reason in _REPLACED:
                self._replacements += 1  # the maintenance thread opens a successor
            self._pass_capacity()
        if self._maintenance is not None:
            self._maintenance.wake()
        if self._events.on_close:
            fire_logged(self._events.on_close, self.name, slot.raw, reason)

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
        self._watch(slot)
        conn._raw = fresh.raw

    @staticmethod
    def _watch(slot: Slot) -> None:
        """A wrong-node error seen on the connection dooms its slot: closed on return."""
        _driver.watch_wrong_node(slot.raw, functools.partial(slot.doom, "closed_wrong_node"))

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

    def close(self, timeout: Optional[float] = None) -> int:
        """Stop lending and close idle connections now; borrowed ones are
        closed when they come back. New borrows raise ``PoolClosed``.

        With ``timeout``, wait up to that many seconds for borrowed
        connections to come back, then shut down the sockets of those still
        out (their borrower's next call fails). Returns how many were forced.
        Safe to call more than once.
        """
        grace = None if timeout is None else _build_seconds("timeout", timeout)
        self._life.shut = True
        if self._close_now() and grace is not None:
            return self._force_borrowed(grace)
        return 0

    def _force_borrowed(self, timeout: float) -> int:
        deadline = _monotonic() + timeout
        while self._open and _monotonic() < deadline:
            time.sleep(min(0.01, max(deadline - _monotonic(), 0.0)))  # bounded by the deadline
        with self._lock:
            late = [slot for slot in self._slots if slot.retire != "closed_on_pool_close"]
            for slot in late:
                slot.doom("closed_on_pool_close")
        for slot in late:
            _driver.interrupt(slot.raw)
        if late:
            logger.warning(
                "pool %r: closed; %d borrowed connection(s) not returned within %.3g s were shut down",
                self.name,
                len(late),
                timeout,
            )
        return len(late)

    def _close_now(self) -> bool:
        """The closing itself; False if the pool was closed (or never opened) already."""
        with self._lock:
            if self._closed:
                return self._life.opened
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
        return True

    # -- control ------------------------------------------------------------

    def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        """Start a pool made with ``open=False``: connections are opened in the
        background (retrying with back-off) and borrows are served from now
        on. ``wait=True`` then blocks like :meth:`wait`. Opening an open pool
        does nothing; a closed pool cannot be opened again."""
        with self._lock:
            if self._life.shut:
                raise PoolClosed(f"pool {self.name!r} was closed; make a new pool")
            if not self._life.opened:
                self._life.opened = True
                self._closed = False
        self._ensure_maintenance()
        if wait:
            self.wait(timeout)

    def wait(self, timeout: float = 30.0) -> None:
        """Block until ``pre_create_num`` connections are open; ``PoolTimeout``
        (naming the last connect error) if that takes longer than ``timeout``."""
        limit = _build_seconds("timeout", timeout)
        deadline = _monotonic() + limit
        target = self._config.pre_create_num
        while self._open < target:
            if self._closed:
                raise PoolClosed(f"pool {self.name!r} is {'closed' if self._life.shut else 'not open'}")
            if _monotonic() >= deadline:
                raise PoolTimeout(
                    f"pool {self.name!r}: {self._open} of {target} connections open after {limit:.3g} s;"
                    f" last connect error: {self._life.last_error!r}"
                )
            if self._maintenance is not None:
                self._maintenance.wake()
            time.sleep(0.01)  # bounded by the deadline

    def drain(self) -> int:
        """Replace every connection without failing a borrower: idle ones are
        closed now, borrowed ones when they come back, connections being
        opened right now once they are used. The pool reopens what it keeps
        warm. Use after a credential rotation, failover or DNS change.
        Returns how many connections were marked."""
        with self._lock:
            self._life.epoch += 1
            for slot in self._slots:
                slot.doom("closed_drained")
            marked = len(self._slots)
            idle = list(self._idle)
            self._idle.clear()
            self._held += len(idle)
        for slot in idle:
            self._close_held(slot, "closed_drained")
        return marked

    def resize(self, maxsize: Optional[int] = None, size: Optional[int] = None) -> None:
        """Change ``maxsize`` and/or ``size`` while running. Growing serves
        queued borrowers at once; shrinking closes idle extras now and
        borrowed extras when they come back."""
        with self._lock:
            cfg = self._config
            new_max = cfg.maxsize if maxsize is None else _build_int("maxsize", maxsize)
            new_size = cfg.size if size is None else _build_int("size", size)
            if new_max < 1:
                raise ValueError("maxsize must be >= 1")
            if new_size > new_max:
                raise ValueError(f"size ({new_size}) must not exceed maxsize ({new_max})")
            if cfg.pre_create_num > new_max:
                raise ValueError(f"maxsize ({new_max}) must not be below pre_create_num ({cfg.pre_create_num})")
            self._config = dataclasses.replace(cfg, maxsize=new_max, size=new_size)
            self._maxsize = new_max
            while self._waiters and not self._closed and self._open + self._connecting < new_max:
                self._connecting += 1
                self._hand_over(DIAL)
            excess = self._open + self._connecting - new_max
            idle: List[Slot] = []
            while excess > 0 and self._idle:
                idle.append(self._idle.popleft())  # the longest rested first
                excess -= 1
            self._held += len(idle)
            for slot in idle:
                slot.doom("closed_resized")
            for slot in self._slots:
                if excess <= 0:
                    break
                if slot.retire is None:
                    slot.doom("closed_resized")
                    excess -= 1
            self._life.shed = max(excess, 0)  # the rest are still being opened
        for slot in idle:
            self._close_held(slot, "closed_resized")

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
        """Open ``pre_create_num`` connections now, in the constructor."""
        made: List[Slot] = []
        try:
            for _ in range(self._config.pre_create_num):
                made.append(self._new_slot())
        except BaseException:
            for slot in made:
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
        self._generation += 1
        for slot in self._slots:
            _driver.abandon(slot.raw)
        self._idle = deque()
        self._slots = set()
        self._reclaim = deque()
        self._waiters = WaitQueue()
        self._open = self._connecting = self._held = self._replacements = 0
        self._life.shed = 0  # the parent's connects in flight are not the child's
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
