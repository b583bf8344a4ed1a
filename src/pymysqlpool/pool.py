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
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple, Type

from . import _driver, _forking, _warmup
from ._config import PoolConfig, build, describe, resolve
from ._events import Events, ResetHook, as_sequence, fire_logged
from ._lifecycle import Lifecycle
from ._maintenance import Maintenance
from ._slot import GONE, HELD, IDLE, NEW, OUT, Slot
from ._tls import TlsContexts
from ._waiting import DialToken, Grant, Waiter, WaitQueue
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
_MIN_ATTEMPT = 0.005  # a ping or connect with less time than this left is not started
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
        keepalive_interval: Optional[float] = 60.0,
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
        self._tls = TlsContexts()  # built once here, not by PyMySQL on every connect
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
    #
    # Interrupts (KeyboardInterrupt, SystemExit, asynchronous exceptions, gevent
    # timeouts) may land anywhere. Whatever a borrow holds -- a slot taken from
    # idle, a right to dial, a fresh connection -- is in a local variable and is
    # given up by one idempotent call in an ``except BaseException`` handler;
    # the slot's state says whether it still has to be done.

    def get_conn(self, timeout: Optional[float] = None) -> PooledConnection:
        """Borrow a connection, waiting up to ``timeout`` seconds (default:
        the pool's ``timeout``; ``float('inf')`` waits forever) when all
        ``maxsize`` are in use.

        ``pool.connection()`` is the same call, named for ``with`` blocks: the
        connection goes back when the block ends (rolled back if it raised).
        """
        if timeout is not None or self._reclaim or self._divert:
            return self._acquire(timeout, False)
        # The common case inlined: an idle connection used within the
        # validation window, neither expired nor suspect, needs no check.
        # ``with``, not acquire()/release(): an asynchronous exception can land
        # right after a call returns, never between ``with`` taking the lock
        # and its body, so the lock is always released.
        slot: Optional[Slot] = None
        try:
            with self._lock:
                if self._idle:
                    slot = self._idle.pop()
                    slot.state = OUT
                    self._stats.borrows += 1
            if slot is None:
                return self._acquire_slow(None, None, False)
            now = _monotonic()
            last_used = slot.last_used
            if now - last_used <= self._window and slot.expires > now and last_used >= self._suspect_since:
                slot.borrowed_at = now
                return PooledConnection(self, slot)
            return self._acquire_slow(slot, None, False)
        except BaseException:
            if slot is not None:
                self._abandon(slot)
            raise

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
        return self._acquire(retries * interval if retries else 0.0, pre_ping)

    def _acquire(self, timeout: Optional[float], force_check: bool) -> PooledConnection:
        """Every borrow that is not get_conn()'s inlined common case."""
        if timeout is not None:
            _build_seconds("timeout", timeout)
        if self._reclaim:
            self._drain_reclaimed()
        hooks = self._events.on_timeout
        if not hooks:
            return self._acquire_slow(None, timeout, force_check)
        started = _monotonic()
        try:
            return self._acquire_slow(None, timeout, force_check)
        except PoolTimeout:
            fire_logged(hooks, self.name, _monotonic() - started)
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
        return True  # an interrupt propagates: release() closes the HELD slot

    def _checked_out(self, slot: Slot, started: float) -> Optional[Exception]:
        """Run the check-out hooks on a slot about to be lent; the error (and
        the slot closed, the borrow not counted) if one raised."""
        try:
            for hook in self._events.on_checkout:
                hook(slot.raw, _monotonic() - started)
        except Exception as exc:
            logger.warning("pool %r: on_checkout rejected a connection (%s); closing it", self.name, exc)
            self._discard_unlent(slot, "closed_failed_check")
            return ValueError(f"on_checkout rejected a connection: {exc}")
        return None

    def _acquire_slow(self, first: Optional[Slot], timeout: Optional[float], force_check: bool) -> PooledConnection:
        """Lend ``first`` or whatever the pool grants, within the deadline.

        Queueing and connect retries end at the deadline (``timeout``). A
        ping or a connect may still start after it -- a borrow with
        ``timeout=0`` gets a fresh connection when the idle one is dead --
        but every network wait is cut to what is left of ``timeout +
        connect_timeout``, so no borrow outlives that bound however many
        connections fail.
        """
        started = _monotonic()
        deadline = started + (self._config.timeout if timeout is None else timeout)
        io_timeout = self._config.io_timeout
        hard_end = deadline + io_timeout
        grant: Optional[Grant] = first
        delay = _BACKOFF_FIRST
        rejected = 0
        queued = False
        last_error: Optional[BaseException] = None
        fresh: Optional[Slot] = None  # a connection dialed but not yet booked
        try:
            while True:
                # The first attempt gets all of connect_timeout; later ones what is left.
                retry = bool(rejected) or last_error is not None
                budget = min(io_timeout, hard_end - _monotonic()) if retry else io_timeout
                if grant is None:
                    if retry and (budget < _MIN_ATTEMPT or (last_error is not None and budget < io_timeout)):
                        self._count_timeout()
                        why = f": {last_error}" if last_error is not None else ""
                        raise PoolTimeout(
                            f"pool {self.name!r}: no healthy connection within {deadline - started:.3g} s"
                            f" ({rejected} failed validation){why}"
                        )
                    grant, queued = self._reserve(deadline, queued)
                if isinstance(grant, DialToken):
                    try:
                        fresh = self._new_slot(budget)
                    except Exception as exc:
                        self._dial_failed(grant, exc, deadline, delay)  # raises unless worth retrying
                        grant = None
                        last_error = exc
                        # Back off without holding the right to dial, then
                        # queue again, so a connection returned meanwhile
                        # (or a waiter's turn) is not missed.
                        time.sleep(delay * (0.5 + random.random() / 2))
                        delay = min(delay * 2, _BACKOFF_CAP)
                        continue
                    grant = self._book_dialed(grant, fresh)
                    if self._maintenance is None:
                        self._ensure_maintenance()
                elif not self._validate(grant, force_check, budget):
                    grant = None
                if grant is not None:
                    # A check-out hook's refusal is retried until the deadline
                    # like a failed connect, not until the hard bound.
                    refused = self._checked_out(grant, started) if self._events.on_checkout else None
                    if refused is None:
                        return self._lend(grant)
                    last_error = refused
                grant = None
                rejected += 1
                if rejected == _FLUSH_AFTER:
                    # Several dead in a row: the server most likely restarted.
                    # Close the other suspects unpinged; this borrow dials anew.
                    self._flush_suspects()
        except BaseException:
            if grant is not None:
                self._abandon(grant)
            if fresh is not None and fresh.state == NEW:
                _driver.force_close(fresh.raw)
                self._unbook(fresh, "closed_broken")
            raise

    def _lend(self, slot: Slot) -> PooledConnection:
        slot.borrowed_at = _monotonic()
        if self._track_borrows:
            slot.leak_reported = False
            slot.borrow_stack = _caller_stack()
        return PooledConnection(self, slot)

    def _reserve(self, deadline: float, queued: bool) -> Tuple[Grant, bool]:
        """Take an idle slot, a right to dial, or queue until one is handed
        over. Returns the grant and whether this borrow has queued so far."""
        waiter: Optional[Waiter] = None
        timed_out = False
        try:
            with self._lock:
                if self._closed:
                    self._stats.borrow_errors += 1
                    raise PoolClosed(f"pool {self.name!r} is closed")
                if self._idle:
                    slot = self._idle.pop()
                    slot.state = OUT
                    self._stats.borrows += 1
                    return slot, queued
                if self._open + self._connecting < self._maxsize:
                    token = DialToken()
                    self._connecting += 1
                    self._stats.borrows += 1
                    return token, queued
                limit = self._life.max_waiting
                if limit is not None and len(self._waiters) >= limit:
                    self._stats.borrows_rejected += 1
                    raise TooManyRequests(
                        f"pool {self.name!r}: all {self._maxsize} connections in use and"
                        f" {len(self._waiters)} borrowers already waiting (max_waiting={limit})"
                    )
                waiter = Waiter(_monotonic())
                waiter.queued = True
                self._waiters.append(waiter)
                if not queued:  # a borrow that queues again is still one borrow that waited
                    self._stats.borrows_waited += 1
            if not waiter.wait(deadline - waiter.since):
                with self._lock:
                    if self._waiters.withdraw(waiter):
                        timed_out = True
                        self._stats.borrow_timeouts += 1
                        self._stats.borrow_wait_ms += (_monotonic() - waiter.since) * 1000.0
                # Otherwise served between the timeout and the withdrawal: the
                # grant (or the error) was recorded before the waiter left the queue.
        except BaseException:  # KeyboardInterrupt and the like: leave nothing behind
            if waiter is not None and not timed_out:
                self._withdraw(waiter)
            raise
        if timed_out:
            raise PoolTimeout(
                f"pool {self.name!r}: no connection available within"
                f" {max(deadline - waiter.since, 0.0):.3g} s (maxsize={self._maxsize}, all in use)"
            )
        if waiter.error is not None:
            raise waiter.error
        grant = waiter.grant
        assert grant is not None
        return grant, True

    def _withdraw(self, waiter: Waiter) -> None:
        """Take an interrupted waiter out of the queue, or pass on what it was
        given: it never touched it, so a slot goes back as it came."""
        closing = False
        with self._lock:
            if self._waiters.withdraw(waiter):
                return
            grant = waiter.grant
            if isinstance(grant, Slot) and grant.state == OUT:
                self._stats.borrows -= 1
                if not self._closed:
                    self._park(grant, grant.last_used)
                    return
                grant.state = HELD
                self._held += 1
                closing = True
        if isinstance(grant, DialToken):
            self._unreserve(grant, None, served=True)
        elif closing:
            assert grant is not None
            self._dispose(grant, "closed_on_pool_close")

    def _abandon(self, grant: Grant) -> None:
        """Give up a grant a borrower holds but will not get: an interrupted
        borrow. Idempotent. A slot goes back untouched if it was not used yet
        would be unsafe to assume, so it is closed: its state is unknown."""
        if isinstance(grant, DialToken):
            self._unreserve(grant, None, served=True)
            return
        with self._lock:
            if grant.state == OUT:
                self._stats.borrows -= 1
            elif grant.state != HELD:  # parked again, or already closed
                return
        _driver.force_close(grant.raw)
        self._unbook(grant, "closed_broken")

    def _count_timeout(self) -> None:
        with self._lock:
            self._stats.borrow_timeouts += 1

    def _validate(self, slot: Slot, force: bool, budget: float) -> bool:
        """Make sure a slot taken from idle can be lent; discard it if not."""
        now = _monotonic()
        if slot.expires <= now:
            self._discard_unlent(slot, slot.retire or "closed_lifetime")
            return False
        if not force and now - slot.last_used <= self._window and slot.last_used >= self._suspect_since:
            return True
        try:
            self._check_alive(slot.raw, budget)
        except Exception as exc:
            logger.info("pool %r: idle connection failed validation (%s); replacing it", self.name, exc)
            self._suspect(now)
            self._discard_unlent(slot, "closed_failed_check")
            return False
        slot.last_used = _monotonic()
        return True

    def _check_alive(self, raw: Any, budget: Optional[float] = None) -> None:
        """The pool's validation of an idle connection: ``check=`` or a ping.
        Raises if the connection must not be lent."""
        check = self._config.check
        if check is None:
            # Bounded by connect_timeout (or less, late in a borrow), not by
            # what is left of the timeout: timeout=0 must still be able to ping.
            _driver.ping(raw, self._config.io_timeout if budget is None else budget)
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
            self._dispose(slot, reason)
            return False
        self._put_back_held(slot)
        return True

    def check(self) -> int:
        """Validate every idle connection now (``check=`` or a ping) and close
        the ones that fail; returns how many were closed."""
        slots = self._take_idle(lambda slot, position: True)
        try:
            return sum(not self._recheck(slot, self._check_alive, "closed_failed_check") for slot in slots)
        finally:  # interrupted: what was not checked is closed, not lost
            self._dispose_all([slot for slot in slots if slot.state == HELD], "closed_failed_check")

    def _flush_suspects(self) -> None:
        """Close every idle connection last seen alive before the suspect moment."""
        doomed: List[Slot] = []
        try:
            with self._lock:
                since = self._suspect_since
                doomed = [slot for slot in self._idle if slot.last_used < since]
                if not doomed:
                    return
                self._idle = deque(slot for slot in self._idle if slot.last_used >= since)
                for slot in doomed:
                    slot.state = HELD
                self._held += len(doomed)
            self._dispose_all(doomed, "closed_failed_check")
        except BaseException:
            for slot in doomed:
                if slot.state == HELD:
                    _driver.force_close(slot.raw)
                    self._unbook(slot, "closed_failed_check")
            raise

    def _suspect(self, moment: float) -> None:
        """A connection died: check every idle one last seen alive before now."""
        if moment > self._suspect_since:
            self._suspect_since = moment

    # -- dialing ------------------------------------------------------------

    def _new_slot(self, limit: Optional[float] = None) -> Slot:
        """Open one connection (no lock held). Raises the driver's error.

        The slot comes back NEW: counted in ``connections_made`` but not yet
        booked; the caller books it (_book_dialed, _book_idle) or closes it."""
        cfg = self._config
        # Every wait of the connect is bounded by connect_timeout (or by
        # ``limit``, what is left of a borrow's hard bound), never by the
        # borrow's timeout alone: that governs queueing and retries.
        if limit is None:
            limit = cfg.io_timeout
        started = _monotonic()
        raw: Any = None
        epoch = self._life.epoch
        try:
            kwargs = resolve(cfg.connect_kwargs)  # callables (rotating passwords) evaluated now
            if cfg.connection_factory is not None:
                raw = cfg.connection_factory(**kwargs)
            else:
                raw = _driver.connect(kwargs, limit, self._tls)
            _driver.adopt(raw)
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
            now = _monotonic()
            lifetime = self._lifetime
            expires = now + lifetime * (1.0 - random.random() * _LIFETIME_JITTER) if lifetime else _INF
            slot = Slot(raw, now, expires, self._generation, keepalive)
            slot.probe = _driver.make_probe(raw)
            self._watch(slot)
        except BaseException as exc:
            if raw is not None:
                _driver.close(raw)
            with self._lock:
                self._stats.connect_errors += 1
                self._stats.connect_ms += (_monotonic() - started) * 1000.0
            if isinstance(exc, Exception):
                self._connect_failed(exc, started)
            raise
        if keepalive and keepalive < self._shortest_keepalive:
            self._shortest_keepalive = keepalive  # the maintenance thread ticks faster
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

    def _book_dialed(self, token: DialToken, slot: Slot) -> Slot:
        """Count a connection dialed with ``token`` as lent to the dialer.
        On a closed pool it is closed and PoolClosed raised."""
        with self._lock:
            if token.live and not self._closed:
                token.live = False
                self._connecting -= 1
                self._open += 1
                slot.state = OUT
                self._slots.add(slot)
                return slot
        try:
            _driver.close(slot.raw)
        finally:
            self._unbook(slot, "closed_on_pool_close")
            self._unreserve(token, "borrow_errors", served=True)
        raise PoolClosed(f"pool {self.name!r} is closed")

    def _dial_failed(self, token: DialToken, exc: Exception, deadline: float, delay: float) -> None:
        """A borrower's connect failed. Gives the right to dial back, then
        returns when retrying after ``delay`` can still help, raises the
        driver's error when it cannot, and ``PoolTimeout`` when time is up."""
        fatal = _driver.is_fatal_connect_error(exc) or not self._ever_connected
        if not (fatal or self._closed) and _monotonic() + delay < deadline:
            self._unreserve(token, None, served=True)
            logger.info("pool %r: connecting failed (%s); retrying in %.2f s", self.name, exc, delay)
            return
        logger.warning("pool %r: cannot connect to %s: %s", self.name, describe(self._config), exc)
        if fatal or self._closed:
            self._unreserve(token, "borrow_errors", served=True)
            raise exc
        self._unreserve(token, "borrow_timeouts", served=True)
        raise PoolTimeout(
            f"pool {self.name!r}: could not connect to {describe(self._config)} before the borrow timeout: {exc}"
        ) from exc

    def _unreserve(self, token: DialToken, outcome: Optional[str], served: bool) -> None:
        """Give back a right to dial that was not used (lock not held);
        idempotent. ``served``: it was counted as a borrow, which did not
        happen; ``outcome`` names the counter that says why."""
        with self._lock:
            if not token.live:
                return
            token.live = False
            self._connecting -= 1
            if served:
                self._stats.borrows -= 1
            if outcome is not None:
                setattr(self._stats, outcome, getattr(self._stats, outcome) + 1)
            self._pass_capacity()

    def _pass_capacity(self) -> None:
        """A slot became free: the oldest waiter may dial (lock held)."""
        if self._waiters and not self._closed and self._open + self._connecting < self._maxsize:
            self._hand_over(DialToken())

    # -- returning ----------------------------------------------------------

    def release(self, conn: PooledConnection, failed: bool = False) -> None:
        """Give a borrowed connection back.

        Rolls back an open transaction and restores autocommit first, so the
        next borrower never sees this one's work; ``failed=True`` (what a
        ``with`` block that raised passes) rolls back in any case. A
        connection returned with an answer not fully read (an interrupted
        fetch) is closed, never lent again. Raises ``ReturnConnectionToPoolError``
        if ``conn`` was already given back or is not this pool's.
        """
        if type(conn) is not PooledConnection or conn._pool is not self:  # one test for both misuses
            raise self._foreign(conn)
        slot = conn._slot
        if slot is None:
            raise ReturnConnectionToPoolError(f"this connection was already returned to pool {self.name!r}")
        # Judge the connection before taking the lock. The server may have
        # dropped it while it was lent without the borrower noticing (KILL,
        # restart): as on borrow, a connection not known alive within the
        # validation window is checked, here with a zero-timeout poll().
        now = _monotonic()
        probe = slot.probe
        raw = slot.raw
        clean = (
            not failed
            and not self._always_reset
            and not _driver.needs_reset(raw, self._autocommit)
            and (now - slot.borrowed_at <= self._window or probe is None or not probe(0))
        )
        owned: Optional[Slot] = None  # the slot once taken from the proxy, HELD until parked
        forked = False
        try:
            with self._lock:
                if conn._slot is not slot:  # another thread returned it meanwhile
                    raise ReturnConnectionToPoolError(
                        f"this connection was already returned to pool {self.name!r}"
                    )
                stats = self._stats
                stats.returns += 1
                if slot.generation != self._generation:
                    # Lent before a fork: the socket is the parent's, and this
                    # process's books never counted it.
                    conn._slot = None
                    conn._raw = None
                    forked = True
                else:
                    # Plain stores, no call in between: an interrupt lands
                    # before all of them or after all of them.
                    slot.state = HELD
                    self._held += 1
                    conn._slot = None
                    conn._raw = None
                    owned = slot
                    used = now - slot.borrowed_at
                    stats.use_s += used
                    if used > stats.use_max_s:
                        stats.use_max_s = used
                    if clean and slot.expires > now and not self._closed:
                        # Clean return: no round trip, straight to the oldest
                        # waiter. _park() written out: this runs on every return.
                        slot.last_used = now
                        if self._waiters:
                            self._hand_over(slot, True)
                        else:
                            slot.state = IDLE
                            self._held -= 1
                            self._idle.append(slot)
                        return
            if forked:
                _driver.abandon(raw)
                return
            self._return_slow(slot, failed)
        except BaseException:
            # Interrupted while we held it: the session's state is unknown.
            if owned is not None and owned.state == HELD:
                _driver.force_close(owned.raw)
                self._unbook(owned, "closed_broken")
            raise

    def _foreign(self, conn: Any) -> ReturnConnectionToPoolError:
        if not isinstance(conn, PooledConnection):
            return ReturnConnectionToPoolError(
                f"pool {self.name!r} can only take back the PooledConnection it lent, not {type(conn).__name__}"
            )
        return ReturnConnectionToPoolError(
            f"this connection belongs to pool {conn._pool.name!r}, not to pool {self.name!r}"
        )

    def _return_slow(self, slot: Slot, failed: bool) -> None:
        raw = slot.raw
        cfg = self._config
        probe = slot.probe
        rolled_back = False
        if slot.retire is not None:
            reason: Optional[str] = slot.retire
        elif _driver.is_broken(raw):
            reason = "closed_broken"
            self._suspect(_monotonic())
        elif _driver.mid_answer(raw):
            # The borrower stopped in the middle of an answer (an interrupted
            # fetch, a half-sent command): what is left on the wire belongs to
            # it, and the position in the stream cannot be proved. Never reuse.
            reason = "closed_unread"
        elif probe is not None and not _driver.results_pending(raw) and probe(0):
            # Readable with nothing expected: the server hung up on it while it
            # was lent. (Further result sets still to read are expected bytes.)
            reason = "closed_broken"
            self._suspect(_monotonic())
        elif self._closed:
            reason = "closed_on_pool_close"
        elif slot.expires <= _monotonic():
            reason = "closed_lifetime"
        else:
            reason = None
            try:
                if cfg.reset_session:
                    _driver.reset_session(raw, self._autocommit, cfg.io_timeout)
                elif failed or _driver.needs_reset(raw, self._autocommit):
                    rolled_back = _driver.reset(raw, self._autocommit, cfg.io_timeout)
            except Exception as exc:
                logger.info("pool %r: reset on return failed (%s); closing the connection", self.name, exc)
                reason = "closed_broken"
        if reason is None and self._events.on_checkin and not self._checked_in(slot):
            reason = "closed_broken"
        if reason is None:
            with self._lock:
                if rolled_back:
                    self._stats.rollbacks_on_return += 1
                if cfg.reset_session:
                    self._stats.session_resets += 1
                if not self._closed:
                    self._park(slot, _monotonic(), from_held=True)
                    return
            reason = "closed_on_pool_close"
        self._dispose(slot, reason)

    def _park(self, slot: Slot, now: float, from_held: bool = False) -> None:
        """Hand a healthy slot to the oldest waiter or park it idle (lock
        held). ``from_held``: the slot was counted as HELD until now."""
        slot.last_used = now
        if self._waiters:
            self._hand_over(slot, from_held)
        else:
            slot.state = IDLE
            if from_held:
                self._held -= 1
            self._idle.append(slot)

    def _hand_over(self, grant: Grant, from_held: bool = False) -> None:
        """Serve the oldest waiter (lock held). The waiter's books are kept
        here so that, once woken, it never has to take the lock again.

        Every change to the books is a plain store made before the first
        call: an interrupt lands before all of them (nothing happened) or
        after the waiter holds its grant (it finds it even if never woken).
        """
        waiter = self._waiters[0]
        waiter.grant = grant
        if isinstance(grant, Slot):
            grant.state = OUT
            if from_held:
                self._held -= 1
        else:
            self._connecting += 1
        self._stats.borrows += 1
        self._waiters.popleft()
        waiter.queued = False
        waiter._wake.release()
        self._stats.borrow_wait_ms += (_monotonic() - waiter.since) * 1000.0

    def _discard_unlent(self, slot: Slot, reason: str) -> None:
        """Close a slot granted to a borrower that failed validation before
        the borrower got it: the borrow it was counted for did not happen."""
        with self._lock:
            if slot.state != OUT:
                return
            self._stats.borrows -= 1
            slot.state = HELD
            self._held += 1
        self._dispose(slot, reason)

    def _dispose(self, slot: Slot, reason: str) -> None:
        """Close a slot's connection politely and stop counting it."""
        try:
            _driver.close(slot.raw)
        except BaseException:
            _driver.force_close(slot.raw)
            raise
        finally:
            self._unbook(slot, reason)

    def _dispose_all(self, slots: List[Slot], reason: str) -> None:
        """Dispose of several slots; after an interrupt, the rest are closed
        without a word to the server so that none stays counted."""
        try:
            for slot in slots:
                self._dispose(slot, reason)
        finally:
            for slot in slots:
                if slot.state != GONE:
                    _driver.force_close(slot.raw)
                    self._unbook(slot, reason)

    def _unbook(self, slot: Slot, reason: str) -> None:
        """Stop counting a slot whose connection is closed; idempotent.

        ``reason`` names the counter of closes it adds to, so that
        ``connections_made`` = closes + ``open`` whenever the pool is quiet.
        """
        with self._lock:
            state = slot.state
            if state == GONE:
                return
            if state == IDLE:
                try:
                    self._idle.remove(slot)
                except ValueError:
                    pass  # an interrupted park: counted idle but never queued
            # Plain stores first, so an interrupt cannot split them.
            slot.state = GONE
            self._stats.closes[reason] += 1
            if state != NEW:
                self._open -= 1
                if state == HELD:
                    self._held -= 1
                if reason in _REPLACED:
                    self._replacements += 1  # the maintenance thread opens a successor
                self._slots.discard(slot)
                self._pass_capacity()
        logger.debug("pool %r: closed a connection (%s)", self.name, reason)
        maintenance = self._maintenance
        if maintenance is not None:
            maintenance.wake()
        if self._events.on_close:
            fire_logged(self._events.on_close, self.name, slot.raw, reason)

    def _take_idle(self, pick: Callable[[Slot, int], bool]) -> List[Slot]:
        """Move the idle slots ``pick`` selects (oldest first) to HELD."""
        taken: List[Slot] = []
        with self._lock:
            if self._closed:
                return taken
            keep: List[Slot] = []
            # Oldest first: idle is used LIFO, so the left end rested longest.
            for position, slot in enumerate(self._idle):
                (taken if pick(slot, position) else keep).append(slot)
            if taken:
                self._idle.clear()
                self._idle.extend(keep)
                for slot in taken:
                    slot.state = HELD
                self._held += len(taken)
        return taken

    def _put_back_held(self, slot: Slot) -> None:
        """A HELD slot the pool finished working on goes back to idle (or is
        closed if the pool closed meanwhile)."""
        with self._lock:
            if slot.state != HELD:
                return
            if not self._closed:
                self._park(slot, _monotonic(), from_held=True)
                return
        self._dispose(slot, "closed_on_pool_close")

    def _book_idle(self, slot: Slot, token: Optional[DialToken] = None) -> bool:
        """Count a NEW slot opened in the background (with the right to dial
        ``token``, if any) as idle. False, and the connection closed, if the
        pool closed meanwhile."""
        with self._lock:
            if token is not None and token.live:
                token.live = False
                self._connecting -= 1
            if not self._closed:
                self._open += 1
                slot.state = HELD
                self._held += 1
                self._slots.add(slot)
                self._park(slot, _monotonic(), from_held=True)
                return True
        self._dispose(slot, "closed_on_pool_close")
        return False

    def _reconcile(self, grace: float, seen: Dict[Slot, Tuple[float, float]]) -> int:
        """Close slots an interrupt orphaned (one that landed inside the
        clean-up of another): counted idle but not in the idle queue, or lent
        but held by no live proxy, unchanged for ``grace`` seconds -- longer
        than any validation or connect of a borrow in progress. Called by the
        maintenance thread, which keeps ``seen`` (candidates and since when)
        between rounds; returns how many were closed."""
        now = _monotonic()
        with self._lock:
            queued = set(map(id, self._idle))
            orphans = []
            for slot in self._slots:
                if slot.state == IDLE:
                    if id(slot) not in queued:
                        orphans.append(slot)
                    continue
                if slot.state != OUT:
                    continue
                proxy = slot.owner() if slot.owner is not None else None
                if proxy is not None and proxy._slot is slot:
                    continue
                first = seen.get(slot)
                if first is None or first[0] != slot.borrowed_at:
                    first = seen[slot] = (slot.borrowed_at, now)
                if now - first[1] >= grace:
                    orphans.append(slot)
            for slot in list(seen):
                if slot.state != OUT or slot in orphans:
                    del seen[slot]
            for slot in orphans:
                slot.state = HELD
            self._held += len(orphans)
        if orphans:
            logger.warning("pool %r: closing %d connection(s) orphaned by an interrupt", self.name, len(orphans))
            self._dispose_all(orphans, "closed_broken")
        return len(orphans)

    def _reconnect_in_place(self, conn: PooledConnection) -> None:
        """0.5.0 ``ping(reconnect=True)``: swap a dead socket for a new session."""
        slot = conn._slot
        if slot is None:
            raise conn._returned_error()
        _driver.force_close(slot.raw)
        fresh = self._new_slot()  # on failure the dead one stays, dropped on return
        with self._lock:
            # The dead session is closed, the fresh one takes its place.
            self._stats.closes["closed_broken"] += 1
            fresh.state = GONE
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
        elif not self._lock.locked():
            # No thread to hand it to (closed pool): reclaim now, unless a
            # thread (maybe this one) holds the lock; then the next borrow does it.
            self._drain_reclaimed()

    def _drain_reclaimed(self) -> None:
        while True:
            try:
                slot = self._reclaim.popleft()
            except IndexError:
                return
            with self._lock:
                if slot.generation != self._generation or slot.state != OUT:
                    continue  # forked, or already given up by an interrupted borrow
                if not slot.leak_reported:  # not already counted by leak_timeout
                    self._stats.leaks_detected += 1
                slot.state = HELD
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
            self._dispose(slot, "leaks_reclaimed")

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
            for slot in idle:
                slot.state = HELD
            self._held += len(idle)
            self._stats.borrow_errors += len(self._waiters)
            self._waiters.fail_all(PoolClosed(f"pool {self.name!r} was closed while waiting"))
            maintenance, self._maintenance = self._maintenance, None
        try:
            if maintenance is not None:
                maintenance.stop()
        finally:
            self._dispose_all(idle, "closed_on_pool_close")
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
        self._dispose_all(self._take_idle(lambda slot, position: True), "closed_drained")
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
                self._hand_over(DialToken())
            excess = self._open + self._connecting - new_max
            idle: List[Slot] = []
            while excess > 0 and self._idle:
                slot = self._idle.popleft()  # the longest rested first
                slot.state = HELD
                self._held += 1
                idle.append(slot)
                excess -= 1
            for slot in idle:
                slot.doom("closed_resized")
            for slot in self._slots:
                if excess <= 0:
                    break
                if slot.retire is None:
                    slot.doom("closed_resized")
                    excess -= 1
            self._life.shed = max(excess, 0)  # the rest are still being opened
        self._dispose_all(idle, "closed_resized")

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
            self._dispose(slot, "closed_on_pool_close")  # finished after the constructor gave up
            return False

        try:
            _warmup.run(step, min(wanted, _warmup.MAX_AT_ONCE), f"pymysqlpool-warmup-{self.name}")
            for slot in made:
                self._book_idle(slot)
        except BaseException:
            with books:
                dials[1] = 1
            self._dispose_all(made, "closed_on_pool_close")
            raise
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
