"""The pool's core: its books and every decision, without I/O.

The rules -- which slot to lend, when to dial, who waits, who is handed what,
when to validate, retire or close, what the counters say -- live here once.
The core never waits and picks no concurrency primitive: a shell
(:class:`~pymysqlpool.pool.ConnectionPool` for threads,
:class:`~pymysqlpool.aio.AsyncConnectionPool` for asyncio) gives it a lock
(a real one, or a no-op on an event loop), a waiter class and a driver module
of non-blocking predicates, and runs its *plans*.

A plan is a generator: it makes the decisions and keeps the books, and yields
a request whenever something must wait on the network or the clock --
``(DIAL, budget, None)``, ``(CHECK, raw, budget)``, ``(PING, raw, timeout)``,
``(CLOSE, raw, None)``, ``(RESET, raw, full)``, ``(WAIT, waiter, timeout)``,
``(SLEEP, seconds, None)``, ``(KILL, session id, budget)``. The shell performs the request (blocking, or with
``await``) and sends the result back, or throws the error in; an interrupt
(KeyboardInterrupt, task cancellation) is thrown in too, and the plan gives
up what it holds without waiting on anything. So both shells follow one
borrow loop, one return, one close, one maintenance round.

Invariants, true whenever the lock is free::

    len(idle) + borrowed + held == open      (held counts KILLING slots too)
    open + connecting <= maxsize
    idle is empty while anyone waits
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import random
import time
import traceback
import warnings
from collections import deque
from typing import Any, Callable, Deque, Dict, Generator, List, Optional, Protocol, Sequence, Set, Tuple, Type, Union

from ._books import Books
from ._config import KILL_WATCH, PoolConfig, describe
from ._driving import Driver
from ._events import Events, ResetHook, as_sequence, fire_logged
from ._lifecycle import POOL_CLOSED, POOL_NEW, POOL_OPEN, POOL_PENDING, Lifecycle
from ._slot import GONE, HELD, IDLE, KILLING, NEW, OUT, Slot
from ._tls import TlsContexts
from ._validators import count, seconds
from ._waiting import DialToken, Grant, Waiter
from .connection import PROXY_TYPES, lend
from .errors import ConnectionLeakWarning, PoolClosed, PoolTimeout, ReturnConnectionToPoolError, TooManyRequests
from .stats import Counters, Number

logger = logging.getLogger("pymysqlpool")


# A borrow that times out while every connection has been lent this long hints at leak_timeout.
_LEAK_HINT_AFTER = 60.0


def _leak_warning(message: str) -> None:
    """Logged, and warned (visible by default, filterable by category)."""
    logger.warning("%s", message)
    warnings.warn(message, ConnectionLeakWarning, stacklevel=2)


_INF = float("inf")
_LIFETIME_JITTER = 0.05  # retire up to 5 % early so a batch does not expire at once
_BACKOFF_FIRST = 0.05
_BACKOFF_CAP = 2.0
_MIN_ATTEMPT = 0.005  # a ping or connect with less time than this left is not started
_REPLACED = ("closed_lifetime", "closed_drained")  # reasons whose connections get a successor
_FLUSH_AFTER = 3  # validation failures in one borrow before the other suspects are closed unpinged
_TICK = 1.0  # longest pause between maintenance rounds


class Op:
    """What a plan asks its shell to do: the first item of each request it
    yields. Each group of constants (these, :class:`Verdict`, the slot states
    of :class:`~pymysqlpool._slot.SlotState`) has values of its own, so one
    compared with another's is never equal."""

    DIAL = 0  # open a connection within budget seconds -> (raw, keepalive seconds)
    CHECK = 1  # validate an idle connection (check= or a ping) within budget -> None, raises if dead
    PING = 2  # keep-alive ping -> None, raises if dead
    CLOSE = 3  # close politely (COM_QUIT), never raises
    RESET = 4  # clean a returned connection (see _reset_plan); full: the session reset -> True if a ROLLBACK was sent
    WAIT = 5  # wait on a waiter up to timeout -> True if woken
    SLEEP = 6  # pause -> None
    KILL = 7  # end a session ((id, age s)) from a side connection within budget -> True once gone; raises if not sent


class Verdict:
    """What becomes of an idle slot granted to a borrow (``PoolCore._verdict``)."""

    LEND = 10  # lent as it is
    VALIDATE = 11  # checked first
    EXPIRED = 12  # closed: past its lifetime


# Read once into module constants: the code reads globals, never the classes'
# attributes (CPython 3.11 does not specialize those reads).
DIAL, CHECK, PING, CLOSE, RESET, WAIT, SLEEP, KILL = (
    Op.DIAL,
    Op.CHECK,
    Op.PING,
    Op.CLOSE,
    Op.RESET,
    Op.WAIT,
    Op.SLEEP,
    Op.KILL,
)
LEND, VALIDATE, EXPIRED = Verdict.LEND, Verdict.VALIDATE, Verdict.EXPIRED

Request = Tuple[int, Any, Any]
Plan = Generator[Request, Any, Any]


class Lock(Protocol):
    """What the core needs of its shell's lock."""

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: Any) -> Any: ...

    def locked(self) -> bool: ...


class NoLock:
    """The lock of a core that runs on one event loop: nothing to exclude."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None

    def locked(self) -> bool:
        return False


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def caller_stack() -> str:
    """The borrower's stack, without the pool's own frames."""
    frames = [f for f in traceback.extract_stack(limit=24) if not f.filename.startswith(_PACKAGE_DIR)]
    return "".join(traceback.format_list(frames[-16:]))


class PoolCore:
    """Slots, counts, the waiter queue and the decisions on them.

    A shell sets three class attributes: ``_drv`` (a driver module of
    non-blocking functions: see :class:`~pymysqlpool._driving.Driver`), ``_waiter`` (its :class:`Waiter`
    subclass) and ``_kind`` (its class name for messages), and overrides
    :meth:`_spawn` to run the kills of abandoned sessions in the background.
    """

    _drv: Driver  # a driver module: _driver (threads) or _adriver (asyncio)
    _waiter: Callable[[float], Waiter]
    _proxy: Type[Any]  # the shell's proxy class (PooledConnection, AsyncPooledConnection)
    _probe_free = False  # the driver's hang-up probe costs no syscall

    def __init__(
        self,
        config: PoolConfig,
        lock: Lock,
        *,
        events: Any,
        reset: Optional[Callable[[Any], Any]],
        open: bool,
        max_waiting: Optional[int],
        reconnect_timeout: float,
        reconnect_failed: Optional[Callable[[Any], Any]],
        kill_on_abandon: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(kill_on_abandon, bool):
            raise TypeError(f"kill_on_abandon must be True or False, got {kill_on_abandon!r}")
        if kill_on_abandon != config.kill_on_abandon:
            config = dataclasses.replace(config, kill_on_abandon=kill_on_abandon)
        self._config = config
        cfg = config
        self.name: str = cfg.name
        self._autocommit = cfg.autocommit
        self._window = cfg.validation_interval
        # A return lent longer than this has its socket polled for a hang-up:
        # the validation window where the probe is a syscall, always where the
        # driver already knows (an event loop reads the end of the stream).
        self._probe_window = -1.0 if self._probe_free else cfg.validation_interval
        self._events = Events()
        for obj in as_sequence(events):
            self._events.add(obj)
        if reset is not None:
            if not callable(reset):
                raise TypeError(f"reset must be callable or None, got {type(reset).__name__}")
            self._events.add(ResetHook(reset))
        # Set by _refresh_events: borrows that leave get_conn's direct path,
        # and returns that skip the clean fast path (reset work or a check-in hook).
        self._divert = False
        self._always_reset = False
        self._refresh_events()
        self._lock = lock
        # Monotonic seconds for every time the core keeps or compares (tests
        # pass a fake one); the shells keep their I/O bounds on the real clock.
        self._clock = clock
        self._stats = Counters()
        # The record of which slot is where: see _books.py. The hot paths
        # read its idle deque and waiter queue through these two names (the
        # same objects, never rebound).
        self._books = Books(cfg.maxsize, self._stats, clock)
        self._idle = self._books.idle
        self._waiters = self._books.waiters
        self._generation = 0
        # Idle slots last seen alive before this moment are pinged before use:
        # one dead connection may mean the server restarted.
        self._suspect_since = -_INF
        self._replacements = 0  # connections retired for age, to be replaced in the background
        self._shortest_keepalive = _INF
        self._reclaim: Deque[Slot] = deque()
        self._tls = TlsContexts()  # built once here, not by the driver on every connect
        self._maintenance: Any = None  # the shell's; has wake() and stop()
        if not isinstance(open, bool):
            raise TypeError(f"open must be True or False, got {open!r}")
        if reconnect_failed is not None and not callable(reconnect_failed):
            raise TypeError(f"reconnect_failed must be callable or None, got {type(reconnect_failed).__name__}")
        self._life = Lifecycle(
            None if max_waiting is None else count("max_waiting", max_waiting, owner=cfg.name),
            seconds("reconnect_timeout", reconnect_timeout, cfg.name),
            reconnect_failed,
        )
        # Lends nothing until the shell opens it (see PoolState).
        self._state = POOL_PENDING if open else POOL_NEW

    # -- public properties --------------------------------------------------

    @property
    def size(self) -> int:
        """Idle connections kept beyond ``max_idle`` (0.5.0's "normal size")."""
        return self._config.size

    @property
    def maxsize(self) -> int:
        """The most connections open at once."""
        return self._books.maxsize

    @property
    def available_num(self) -> int:
        """Idle connections ready to lend now."""
        return len(self._idle)

    @property
    def total_num(self) -> int:
        """Connections open now: idle + borrowed."""
        return self._books.open

    @property
    def closed(self) -> bool:
        """Not lending: closed, or not opened yet."""
        return self._state != POOL_OPEN

    @property
    def _closed(self) -> bool:  # the shells' name until they are moved
        return self._state != POOL_OPEN

    @property
    def timeout(self) -> float:
        return self._config.timeout

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name!r} {describe(self._config)} open={self._books.open}"
            f" idle={len(self._idle)} maxsize={self._books.maxsize}{' closed' if self._state != POOL_OPEN else ''}>"
        )

    def _use_clock(self, clock: Callable[[], float]) -> None:
        """Read time from ``clock`` from now on: the tests' way to give a
        shell-made pool a fake clock, until the shells take ``clock=`` too."""
        self._clock = self._books.clock = clock

    # The books' counts under the names the shells and tests read (read-only).

    @property
    def _open(self) -> int:
        return self._books.open

    @property
    def _held(self) -> int:
        return self._books.held

    @property
    def _killing(self) -> int:
        return self._books.killing

    @property
    def _slots(self) -> Set[Slot]:
        return self._books.slots

    @property
    def _connecting(self) -> int:
        return len(self._books.dialing)

    @property
    def _maxsize(self) -> int:
        return self._books.maxsize

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
        # (twins: on_timeout fires in _borrow_plan, on the direct path too)
        self._divert = self._config.leak_timeout is not None or bool(events.on_checkout)
        self._always_reset = self._config.reset_session or bool(events.on_checkin)

    def _checked_in(self, slot: Slot) -> bool:
        """Run the check-in hooks on a returned (held) connection; False if one raised."""
        used = self._clock() - slot.borrowed_at
        try:
            for hook in self._events.on_checkin:
                hook(slot.raw, used)
        except Exception as exc:
            logger.warning("pool %r: on_checkin failed (%s); closing the connection", self.name, exc)
            return False
        return True  # an interrupt propagates: the return closes the HELD slot

    # -- lending ------------------------------------------------------------

    def _get_conn(self, timeout: Optional[float] = None) -> Any:
        """Borrow a connection, waiting up to ``timeout`` seconds (default:
        the pool's ``timeout``; ``float('inf')`` waits forever) when all
        ``maxsize`` are in use.

        ``pool.connection()`` is the same call, named for ``with`` blocks: the
        connection goes back when the block ends (rolled back if it raised).

        The thread pool's ``get_conn`` itself. The common case -- the most
        recently used idle connection, used within the validation window,
        neither expired nor suspect (nor hung up on, where that costs
        nothing to see) -- is lent here in one frame; anything else returns
        what the shell's ``_acquire``/``_borrow`` return (the asyncio
        shell's: a coroutine).
        """
        if timeout is not None or self._reclaim or self._divert:
            return self._acquire(timeout, False)
        slot: Optional[Slot] = None
        try:
            with self._lock:
                if self._idle:  # Books.lend_newest, written out for its speed
                    slot = self._idle.pop()
                    slot.state = OUT
                    self._stats.borrows += 1
            if slot is None:
                return self._borrow(None, None, False)
            clock = self._clock  # called as a local: self._clock() would not specialize
            now = clock()
            last_used = slot.last_used
            # _verdict's rule, written out for its speed.
            if (
                now - last_used <= self._window
                and slot.expires > now
                and last_used >= self._suspect_since
                # _probe_free as an instance attribute (a class attribute is read slowly)
                and (self._probe_window >= 0.0 or not self._hung_up(slot))
            ):
                slot.borrowed_at = now
                return lend(self, slot)
            return self._borrow(slot, None, False)
        except BaseException:
            if slot is not None:
                self._give_up(slot)
            raise

    def _acquire(self, timeout: Optional[float], force_check: bool) -> Any:
        """The shell's borrow off the direct path (a timeout given, hooks,
        connections to reclaim first)."""
        raise NotImplementedError

    def _borrow(self, first: Optional[Slot], timeout: Optional[float], force_check: bool) -> Any:
        """The shell's run of ``_borrow_plan``: the proxy of the slot it lends."""
        raise NotImplementedError

    def _verdict(self, slot: Slot, now: float, force: bool) -> int:
        """LEND a granted idle slot as it is, VALIDATE it first, or it EXPIRED.

        Validation only when it can matter: idle past the window, or last seen
        alive before a connection died (the server may have restarted).
        (_get_conn applies the same rule, written out for its speed.)"""
        if slot.expires <= now:
            return EXPIRED
        last_used = slot.last_used
        if not force and now - last_used <= self._window and last_used >= self._suspect_since:
            return LEND
        return VALIDATE

    def _hung_up(self, slot: Slot) -> bool:
        """Where the probe is free (an event loop has read the stream's end),
        an idle slot the server hung up on (KILL, restart) is never lent,
        within the validation window too."""
        probe = slot.probe
        return self._probe_free and probe is not None and bool(probe(0))

    def _mark_lent(self, slot: Slot) -> None:
        slot.borrowed_at = self._clock()
        if self._config.leak_timeout is not None:
            slot.leak_reported = False
            slot.borrow_stack = caller_stack()

    def _checked_out(self, slot: Slot, started: float) -> Optional[Exception]:
        """Run the check-out hooks on a slot about to be lent; the error if one
        raised (the caller then closes the slot)."""
        try:
            for hook in self._events.on_checkout:
                hook(slot.raw, self._clock() - started)
        except Exception as exc:
            logger.warning("pool %r: on_checkout rejected a connection (%s); closing it", self.name, exc)
            return ValueError(f"on_checkout rejected a connection: {exc}")
        return None

    def _borrow_plan(self, first: Optional[Slot], timeout: Optional[float], force_check: bool) -> Plan:
        """Lend ``first`` or whatever the pool grants, within the deadline;
        returns the slot, OUT and marked lent.

        Queueing and connect retries end at the deadline (``timeout``). A
        ping or a connect may still start after it -- a borrow with
        ``timeout=0`` gets a fresh connection when the idle one is dead --
        but every network wait is cut to what is left of ``timeout +
        connect_timeout``, so no borrow outlives that bound however many
        connections fail.
        """
        started = self._clock()
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
                budget = min(io_timeout, hard_end - self._clock()) if retry else io_timeout
                if grant is None:
                    if retry and (budget < _MIN_ATTEMPT or (last_error is not None and budget < io_timeout)):
                        self._count("borrow_timeouts")
                        why = f": {last_error}" if last_error is not None else ""
                        raise PoolTimeout(
                            f"pool {self.name!r}: no healthy connection within {deadline - started:.3g} s"
                            f" ({rejected} failed validation){why}"
                        ) from last_error
                    grant, queued = yield from self._reserve_plan(deadline, queued)
                if isinstance(grant, DialToken):
                    try:
                        fresh = yield from self._dial_plan(budget)
                    except Exception as exc:
                        self._dial_failed(grant, exc, deadline)  # raises unless worth retrying
                        grant = None
                        last_error = exc
                        # Back off without holding the right to dial, as a
                        # waiter: a connection returned meanwhile is taken at
                        # once (the server may refuse more sessions: 1226).
                        pause = min(delay * (0.5 + random.random() / 2), deadline - self._clock())
                        grant = yield from self._backoff_plan(pause)  # a slot is validated and lent below
                        delay = min(delay * 2, _BACKOFF_CAP)
                        continue
                    if not self._book_dialed(grant, fresh):
                        closed = self._state != POOL_OPEN
                        yield from self._close_plan(fresh, "closed_on_pool_close" if closed else "closed_orphaned")
                        if closed:
                            self._unreserve(grant, "borrow_errors", served=True)
                            raise PoolClosed(f"pool {self.name!r} is closed")
                        # A dial so slow its right was revoked, and the place
                        # taken: queue again, still one borrow.
                        self._count("borrows", -1)
                        grant = fresh = None
                        continue
                    grant = fresh
                elif not (yield from self._validate_plan(grant, force_check, budget)):
                    grant = None
                if grant is not None:
                    # A check-out hook's refusal is retried until the deadline
                    # like a failed connect, not until the hard bound.
                    refused = self._checked_out(grant, started) if self._events.on_checkout else None
                    if refused is None:
                        self._mark_lent(grant)
                        return grant
                    last_error = refused
                    yield from self._reject_plan(grant, "closed_failed_check")
                grant = None
                rejected += 1
                if rejected == _FLUSH_AFTER:
                    # Several dead in a row: the server most likely restarted.
                    # Close the other suspects unpinged; this borrow dials anew.
                    yield from self._flush_suspects_plan()
        except BaseException as exc:
            if grant is not None:
                self._give_up(grant)
            if fresh is not None and fresh.state == NEW:
                self._drop(fresh, "closed_broken")
            if isinstance(exc, PoolTimeout) and self._events.on_timeout:  # twins: for both shells
                fire_logged(self._events.on_timeout, self.name, self._clock() - started)
            raise

    def _reserve_now(self, queued: bool) -> Union[Slot, DialToken, Waiter]:
        """An idle slot, a right to dial, or a waiter now queued."""
        with self._lock:
            if self._state != POOL_OPEN:
                self._stats.borrow_errors += 1
                raise PoolClosed(f"pool {self.name!r} is closed")
            books = self._books
            slot = books.lend_newest()
            if slot is not None:
                return slot
            if books.has_room():
                self._stats.borrows += 1
                return books.new_token()
            limit = self._life.max_waiting
            if limit is not None and len(self._waiters) >= limit:
                self._stats.borrows_rejected += 1
                raise TooManyRequests(
                    f"pool {self.name!r}: all {books.maxsize} connections in use and"
                    f" {len(self._waiters)} borrowers already waiting (max_waiting={limit})"
                )
            waiter = self._waiter(self._clock())
            books.queue(waiter)
            if not queued:  # a borrow that queues again is still one borrow that waited
                self._stats.borrows_waited += 1
            return waiter

    def _reserve_plan(self, deadline: float, queued: bool) -> Plan:
        """Take an idle slot, a right to dial, or queue until one is handed
        over. Returns the grant and whether this borrow has queued so far."""
        got = self._reserve_now(queued)
        if not isinstance(got, Waiter):
            return got, queued
        waiter = got
        timed_out = False
        try:
            if not (yield (WAIT, waiter, deadline - waiter.since)):
                with self._lock:
                    if self._books.withdraw(waiter):
                        timed_out = True
                        self._stats.borrow_timeouts += 1
                        self._stats.borrow_wait_ms += (self._clock() - waiter.since) * 1000.0
                # Otherwise served between the timeout and the withdrawal: the
                # grant (or the error) was recorded before the waiter left the queue.
        except BaseException:  # KeyboardInterrupt, cancellation: leave nothing behind
            if not timed_out:
                self._withdraw(waiter)
            raise
        if timed_out:
            raise PoolTimeout(
                f"pool {self.name!r}: no connection available within"
                f" {max(deadline - waiter.since, 0.0):.3g} s (maxsize={self._books.maxsize}, all in use)"
                + self._leak_hint()
            )
        if waiter.error is not None:
            raise waiter.error
        grant = waiter.grant
        assert grant is not None
        return grant, True

    def _backoff_plan(self, pause: float) -> Plan:
        """Wait out a failed connect's back-off of ``pause`` seconds queued
        as a waiter that takes a returned slot but never a right to dial
        (that would end the back-off at once, and two borrowers backing off
        would dial in turn without pause). Returns the slot handed over, OUT,
        or None when the pause ended (or an idle slot or a close is there for
        the next reservation to find)."""
        with self._lock:
            if self._idle or self._state != POOL_OPEN or pause <= 0:
                return None
            waiter = self._waiter(self._clock())
            waiter.backoff = True
            self._books.queue(waiter)
        try:
            if not (yield (WAIT, waiter, pause)):
                with self._lock:
                    if self._books.withdraw(waiter):
                        return None
        except BaseException:
            self._withdraw(waiter)
            raise
        if waiter.error is not None:
            raise waiter.error
        return waiter.grant

    def _withdraw(self, waiter: Waiter) -> None:
        """Take an interrupted waiter out of the queue, or pass on what it was
        given: it never touched it, so a slot goes back as it came."""
        with self._lock:
            books = self._books
            if books.withdraw(waiter):
                return
            grant = waiter.grant
            if isinstance(grant, Slot) and books.unlend(grant) and self._state == POOL_OPEN:
                self._park(grant, grant.last_used)
                return
        if isinstance(grant, DialToken):
            self._unreserve(grant, None, served=True)
        elif isinstance(grant, Slot) and grant.state == HELD:
            self._drop(grant, "closed_on_pool_close")  # no waiting after an interrupt

    def _give_up(self, grant: Grant) -> None:
        """Let go of a grant a borrower holds but will not get: an interrupted
        borrow. Idempotent. Assuming a slot was not used yet would be unsafe,
        so it is dropped: its state is unknown."""
        if isinstance(grant, DialToken):
            self._unreserve(grant, None, served=True)
            return
        with self._lock:
            if not self._books.unlend(grant) and grant.state != HELD:  # parked again, or already closed
                return
        self._drop(grant, "closed_broken")

    _abandon = _give_up  # the shells' name until they are moved

    def _count(self, counter: str, step: int = 1) -> None:
        with self._lock:
            setattr(self._stats, counter, getattr(self._stats, counter) + step)

    def _validate_plan(self, slot: Slot, force: bool, budget: float) -> Plan:
        """Make sure a slot taken from idle can be lent; discard it if not."""
        now = self._clock()
        if self._hung_up(slot):  # validated for free: dead, no ping needed
            self._suspect(now)
            yield from self._reject_plan(slot, "closed_failed_check")
            return False
        verdict = self._verdict(slot, now, force)
        if verdict == LEND:
            return True
        if verdict == EXPIRED:
            yield from self._reject_plan(slot, slot.retire or "closed_lifetime")
            return False
        try:
            yield (CHECK, slot.raw, budget)
        except Exception as exc:
            logger.info("pool %r: idle connection failed validation (%s); replacing it", self.name, exc)
            self._suspect(now)
            yield from self._reject_plan(slot, "closed_failed_check")
            return False
        slot.last_used = self._clock()
        return True

    def _reject_plan(self, slot: Slot, reason: str) -> Plan:
        """Close a slot granted to a borrower that failed validation before
        the borrower got it: the borrow it was counted for did not happen."""
        with self._lock:
            if not self._books.unlend(slot):
                return
        yield from self._close_plan(slot, reason)

    def _suspect(self, moment: float) -> None:
        """A connection died: check every idle one last seen alive before now."""
        if moment > self._suspect_since:
            self._suspect_since = moment

    def _flush_suspects_plan(self) -> Plan:
        """Close every idle connection last seen alive before the suspect moment."""
        with self._lock:
            since = self._suspect_since
            doomed = self._books.hold_idle(lambda slot, position: slot.last_used < since)
        if doomed:
            yield from self._close_all_plan(doomed, "closed_failed_check")

    # -- dialing ------------------------------------------------------------

    def _dial_plan(self, budget: Optional[float] = None) -> Plan:
        """Open one connection; returns its slot NEW (not booked, nor yet
        counted in ``connections_made``): the caller books it (_book_dialed,
        _book_idle, _swap_in) or closes it, and either counts it. Raises the
        driver's error."""
        started = self._clock()
        epoch = self._life.epoch
        try:
            raw, keepalive = yield (DIAL, self._config.io_timeout if budget is None else budget, None)
        except BaseException as exc:
            failed = isinstance(exc, Exception)  # an interrupt or a cancel is no connect error
            with self._lock:
                self._stats.connect_errors += failed
                self._stats.connect_ms += (self._clock() - started) * 1000.0
            if isinstance(exc, Exception):
                self._connect_failed(exc, started)
            raise
        return self._book_new(raw, keepalive, started, epoch)

    def _book_new(self, raw: Any, keepalive: float, started: float, epoch: int) -> Slot:
        """The slot of a connection just opened, with its jittered lifetime."""
        drv = self._drv
        try:
            for hook in self._events.on_connect:
                hook(raw, self._clock() - started)
            now = self._clock()
            lifetime = self._config.con_lifetime
            expires = now + lifetime * (1.0 - random.random() * _LIFETIME_JITTER) if lifetime else _INF
            slot = Slot(raw, now, expires, self._generation, keepalive)
            slot.probe = drv.make_probe(raw)
            slot.lend_as = self._proxy.proxy_for(raw)
            slot.session = drv.session_id(raw)
            self._watch(slot)
        except BaseException as exc:
            drv.force_close(raw)
            with self._lock:
                self._stats.connect_errors += isinstance(exc, Exception)
            raise
        if keepalive and keepalive < self._shortest_keepalive:
            # Maintenance must tick faster: wake it now, or a pause it began
            # before this connection existed (up to a second) outlasts the
            # session's wait_timeout.
            self._shortest_keepalive = keepalive
            maintenance = self._maintenance
            if maintenance is not None:
                maintenance.wake()
        with self._lock:
            self._stats.connect_ms += (now - started) * 1000.0
            self._life.ever_connected = True
            self._life.failing_since = None
            if epoch != self._life.epoch:  # drain() ran while this one was dialing
                slot.doom("closed_drained")
            elif self._life.shed and self._over_maxsize():  # resize() shrank meanwhile
                self._life.shed -= 1
                slot.doom("closed_resized")
        logger.debug("pool %r: opened a connection (%.1f ms)", self.name, (now - started) * 1000.0)
        return slot

    def _over_maxsize(self) -> bool:
        books = self._books
        return books.open + books.connecting > books.maxsize

    def _watch(self, slot: Slot) -> None:
        """A wrong-node error seen on the connection dooms its slot: closed on return."""
        self._drv.watch_wrong_node(slot.raw, functools.partial(slot.doom, "closed_wrong_node"))

    def _connect_failed(self, exc: Exception, started: float) -> None:
        """Remember the error for wait(); call reconnect_failed once per outage
        that lasted reconnect_timeout."""
        life = self._life
        with self._lock:
            due = life.connect_failed(exc, started, self._clock())
        if due and life.reconnect_failed is not None:
            logger.error(
                "pool %r: no connection could be opened for %.1f s: %s", self.name, life.reconnect_timeout, exc
            )
            try:
                life.reconnect_failed(self)
            except Exception:
                logger.exception("pool %r: reconnect_failed callback failed; ignored", self.name)

    def _book_dialed(self, token: DialToken, slot: Slot) -> bool:
        """Count a connection dialed with ``token`` as lent to the dialer;
        False on a closed pool (the token is left to the caller), or when the
        token was revoked as orphaned and its place taken (the caller closes it)."""
        with self._lock:
            return self._state == POOL_OPEN and self._books.book_lent(slot, token)

    def _dial_failed(self, token: DialToken, exc: Exception, deadline: float) -> None:
        """A borrower's connect failed. Gives the right to dial back, then
        returns while the borrow has time left (it backs off and retries or
        takes a returned connection), raises the driver's error when retrying
        cannot help, and ``PoolTimeout`` when time is up."""
        fatal = self._drv.is_fatal_connect_error(exc) or not self._life.ever_connected
        if not (fatal or self._state != POOL_OPEN) and self._clock() < deadline:
            self._unreserve(token, None, served=True)
            logger.info("pool %r: connecting failed (%s); retrying after a back-off", self.name, exc)
            return
        logger.warning("pool %r: cannot connect to %s: %s", self.name, describe(self._config), exc)
        if fatal or self._state != POOL_OPEN:
            self._unreserve(token, "borrow_errors", served=True)
            raise exc
        self._unreserve(token, "borrow_timeouts", served=True)
        raise PoolTimeout(
            f"pool {self.name!r}: could not connect to {describe(self._config)} before the borrow timeout: {exc}"
        ) from exc

    def _unreserve(self, token: DialToken, outcome: Optional[str], served: bool) -> None:
        """Give back a right to dial that was not used; idempotent.
        ``served``: it was counted as a borrow, which did not happen;
        ``outcome`` names the counter that says why."""
        with self._lock:
            if not self._books.spend(token):
                return
            if served:
                self._stats.borrows -= 1
            if outcome is not None:
                setattr(self._stats, outcome, getattr(self._stats, outcome) + 1)
            self._pass_capacity()

    def _pass_capacity(self) -> bool:
        """A slot became free: the oldest waiter may dial, unless it is backing
        off from a failed connect (lock held). True if it was given the right."""
        return self._state == POOL_OPEN and self._books.serve_waiter_with_room()

    # -- returning ----------------------------------------------------------

    def _give_back(self, conn: Any, failed: bool = False) -> Any:
        """Give a borrowed connection back to its pool.

        Rolls back an open transaction and restores autocommit first, so the
        next borrower never sees this one's work; ``failed=True`` (what a
        ``with`` block that raised passes) rolls back in any case. A
        connection returned with an answer not fully read (an interrupted
        fetch) is closed, never lent again. Raises ``ReturnConnectionToPoolError``
        if ``conn`` was already given back or is not this pool's.

        The thread pool's ``release`` itself: a clean return is one frame.
        None when done (parked clean, or a socket lent before a fork left to
        the parent); else the slot is HELD and this returns what the shell's
        ``_return_slow(slot, failed)`` returns (the asyncio shell's: the
        coroutine that runs the return plan).
        """
        # A global set, not self._proxy: CPython 3.11 reads class attributes
        # slowly. The other shell's proxy fails the pool test.
        if type(conn) not in PROXY_TYPES or conn._pool is not self:
            raise self._proxy.refusal(self, conn)
        slot = conn._slot
        if slot is None:
            raise conn._returned_twice()
        # Judged before taking the lock. Clean means parked as it is, no round
        # trip: not failed, nothing to reset, and -- if it was lent longer than
        # _probe_window -- its socket not hung up on (KILL, restart) while lent.
        clock = self._clock  # called as a local: self._clock() would not specialize
        now = clock()
        probe = slot.probe
        clean = (
            not failed
            and not self._always_reset
            and not self._drv.needs_reset(slot.raw, self._autocommit)
            and (now - slot.borrowed_at <= self._probe_window or probe is None or not probe(0))
        )
        try:
            with self._lock:
                if conn._slot is not slot:  # returned by another thread meanwhile
                    raise conn._returned_twice()
                stats = self._stats
                stats.returns += 1
                # Plain stores, no call in between: an interrupt lands before
                # all of them or after all of them.
                conn._slot = None
                conn._raw = None
                forked = slot.generation != self._generation
                if not forked:
                    slot.proxied = False
                    used = now - slot.borrowed_at
                    stats.use_s += used
                    if used > stats.use_max_s:
                        stats.use_max_s = used
                    if clean and slot.expires > now and self._state == POOL_OPEN:
                        # Clean return: no round trip, to the oldest waiter
                        # or straight from OUT to IDLE (Books.park, written
                        # out for its speed where nobody waits). Held for the
                        # hand-over: an interrupt at its call then leaves a
                        # HELD slot, which the except below drops, not an
                        # unlent OUT one.
                        if self._waiters:
                            slot.state = HELD  # Books.hold, written out: no call before it
                            self._books.held += 1
                            self._books.park(slot, now)
                        else:
                            slot.last_used = now
                            slot.state = IDLE
                            self._idle.append(slot)
                        return None
                    self._books.hold(slot)
            if forked:
                # Lent before a fork: the socket is the parent's, and this
                # process's books never counted it.
                self._drv.abandon(slot.raw)
                return None
            return self._return_slow(slot, failed)
        except ReturnConnectionToPoolError:
            raise
        except BaseException:
            # Interrupted while the pool held it: the session's state is unknown.
            if conn._slot is None and slot.state == HELD:
                self._drop(slot, "closed_broken")
            raise

    def _return_slow(self, slot: Slot, failed: bool) -> Any:
        """The shell's slow return of a HELD slot: run ``_return_plan``."""
        raise NotImplementedError

    def _close_reason(self, slot: Slot) -> Optional[str]:
        """Why a returned connection must be closed, or None to reset and keep it."""
        drv = self._drv
        raw = slot.raw
        if slot.retire is not None:
            return slot.retire
        if drv.is_broken(raw):
            self._suspect(self._clock())
            return "closed_broken"
        if drv.mid_answer(raw):
            # The borrower stopped in the middle of an answer (an interrupted
            # fetch, a half-sent command): what is left on the wire belongs to
            # it, and the position in the stream cannot be proved. Never reuse.
            return "closed_unread"
        probe = slot.probe
        if probe is not None and not drv.results_pending(raw) and probe(0):
            # Readable with nothing expected: the server hung up on it while it
            # was lent. (Further result sets still to read are expected bytes.)
            self._suspect(self._clock())
            return "closed_broken"
        if self._state != POOL_OPEN:
            return "closed_on_pool_close"
        if slot.expires <= self._clock():
            return "closed_lifetime"
        return None

    def _return_plan(self, slot: Slot, failed: bool) -> Plan:
        """The slow return of a HELD slot: reset it and park it, or close it."""
        kill = self._abandoned(slot)  # asked first: a close forgets a half-read result
        reason = self._close_reason(slot)
        rolled_back = False
        if reason is None:
            try:
                rolled_back = yield from self._reset_plan(slot.raw, failed)
            except Exception as exc:
                logger.info("pool %r: reset on return failed (%s); closing the connection", self.name, exc)
                reason = "closed_broken"
        if reason is None and self._events.on_checkin and not self._checked_in(slot):
            reason = "closed_broken"
        if reason is None:
            with self._lock:
                if rolled_back:
                    self._stats.rollbacks_on_return += 1
                if self._config.reset_session:
                    self._stats.session_resets += 1
                if slot.state != HELD:
                    return  # closed meanwhile as orphaned: reset for too long (see _reconcile_plan)
                if self._state == POOL_OPEN:
                    self._park(slot, self._clock())
                    return
            reason = "closed_on_pool_close"
        yield from self._close_plan(slot, reason, kill)

    # twins: what a return sends is decided here once; the shells only execute it.
    def _reset_plan(self, raw: Any, failed: bool) -> Plan:
        """Clean a returned connection for the next borrower: nothing when
        nothing of this borrow's can show (no transaction, autocommit as the
        pool's, no result left); ``reset_session=True``: the full session
        reset, always; otherwise the driver's reset (further result sets
        read, ROLLBACK if a transaction is open or ``failed``, autocommit
        restored). True if a ROLLBACK was sent."""
        if self._config.reset_session:
            yield (RESET, raw, True)
            return False
        if failed or self._drv.needs_reset(raw, self._autocommit):
            return bool((yield (RESET, raw, False)))
        return False

    def _park(self, slot: Slot, now: float) -> None:
        """Hand a healthy OUT or HELD slot to the oldest waiter or park it idle (lock held)."""
        self._books.park(slot, now)

    # -- closing connections (the vocabulary: see _books.py) ---------------------

    def _close_plan(self, slot: Slot, reason: str, kill: bool = False) -> Plan:
        """Close a slot's connection politely and stop counting it; ``kill``:
        its session may still be running the borrower's statement, so the slot
        stays counted until a background kill lets it go."""
        try:
            yield (CLOSE, slot.raw, None)
        except BaseException:
            self._drv.force_close(slot.raw)
            raise
        finally:
            self._unbook(slot, reason, kill)

    def _close_all_plan(self, slots: List[Slot], reason: str) -> Plan:
        """Close several slots; after an interrupt, the rest are dropped
        (no word to the server) so that none stays counted."""
        try:
            for slot in slots:
                yield from self._close_plan(slot, reason)
        finally:
            for slot in slots:
                if slot.state != GONE:
                    self._drop(slot, reason)

    def _drop(self, slot: Slot, reason: str) -> None:
        """Close without a word to the server and stop counting: never waits."""
        self._drv.force_close(slot.raw)
        self._unbook(slot, reason)

    # The shells' names until they are moved.
    _dispose_plan = _close_plan
    _dispose_all_plan = _close_all_plan
    _kill = _drop

    def _unbook(self, slot: Slot, reason: str, kill: bool = False) -> None:
        """Stop counting a slot whose connection is closed; idempotent.

        ``reason`` names the counter of closes it adds to, so that
        ``connections_made`` = closes + ``open`` - ``killing`` whenever the
        pool is quiet.
        ``kill``: its session may still be at work on the server; the slot
        stays counted (KILLING) until a background kill lets it go.
        """
        with self._lock:
            if kill and slot.state == HELD:  # the return's: gone or KILLING already otherwise
                self._books.await_kill(slot, reason, self._clock() + self._config.kill_bound)
            else:
                kill = False
                if not self._unbook_locked(slot, reason):
                    return
        if kill:
            self._start_kill(slot)
        else:
            self._after_close(slot, reason)

    # -- killing abandoned sessions -------------------------------------------
    #
    # Closing a socket does not stop the server: a statement left mid-answer
    # (cancelled, interrupted, read_timeout) runs to its end, keeps its locks,
    # and its session stays on the server's books. So the pool sends KILL over
    # a side connection and keeps the slot counted until the session is gone:
    # the server never sees more than maxsize sessions from the pool's slots.

    def _abandoned(self, slot: Slot) -> bool:
        """A returned (or reclaimed) slot's session may still be running the borrower's
        statement: a command not answered to its end (cancelled, interrupted,
        read_timeout), or an unbuffered result not read to its end. The
        pool's own steps (ping, reset) are not killed: they run nothing long."""
        return self._config.kill_on_abandon and bool(slot.session) and self._drv.left_running(slot.raw)

    def _start_kill(self, slot: Slot) -> None:
        """Run the kill of a KILLING slot off the caller's path."""
        try:
            started = self._spawn(self._killer_plan(slot))
        except Exception as exc:  # no thread or task to be had: give the slot up now
            logger.warning("pool %r: cannot start the kill of session %d (%s)", self.name, slot.session, exc)
            started = False
        if not started:
            self._killed(slot, False)

    def _spawn(self, plan: Plan) -> bool:
        """Run ``plan`` in the background (the shell's); False if it cannot."""
        plan.close()
        return False

    def _killer_plan(self, slot: Slot) -> Plan:
        """KILL the session of a KILLING slot and free the slot once the server
        let the session go, or once ``slot.kill_by`` passed without proof
        (the server refused the KILL, or could not be reached). Retried with
        back-off while the side connection fails: a server that restarts has
        no session left, and says so once it answers. An interrupt leaves
        the slot KILLING: the reconcile frees it after its bound."""
        gone = False
        delay = _BACKOFF_FIRST
        reach_by = slot.kill_by - KILL_WATCH  # failing attempts retry until then; a reached server gets KILL_WATCH more
        while True:
            left = slot.kill_by - self._clock()
            if reach_by - self._clock() < _MIN_ATTEMPT:
                break
            try:
                target = (slot.session, self._clock() - slot.created)
                gone = bool((yield (KILL, target, min(self._config.kill_bound, left))))
                break
            except Exception as exc:
                if self._drv.too_many_sessions(exc):  # no side connection to be had
                    via_idle = yield from self._kill_over_idle_plan(target, left)
                    if via_idle is not None:
                        gone = via_idle
                        break
                refused = self._drv.kill_refused(exc)
                logger.log(
                    logging.WARNING if refused else logging.INFO,
                    "pool %r: could not kill session %d (%s)",
                    self.name,
                    slot.session,
                    exc,
                )
                left = reach_by - self._clock()
                if refused or left < _MIN_ATTEMPT:  # a refusal is not retried: its slot waits out the bound
                    if left > 0:
                        yield (SLEEP, left, None)
                    break
                yield (SLEEP, min(delay, left), None)
                delay = min(delay * 2, _BACKOFF_CAP)
        self._killed(slot, gone)

    def _kill_over_idle_plan(self, target: Tuple[int, float], budget: float) -> Plan:
        """The server refused the kill's side connection (1040, 1226: an
        account limited to maxsize sessions): send the KILL over an idle
        connection of the pool instead, then give it back through the return's
        reset, clean or closed. Only then: it is taken from borrowers
        meanwhile, and a side connection keeps a stuck KILL away from the
        pool. None if no connection is idle, else whether the session is gone."""
        with self._lock:
            slot = None if self._state != POOL_OPEN else self._books.hold_idle_end(newest=True)
            if slot is None:
                return None
        failed = False
        try:
            gone = bool((yield (KILL, (target[0], target[1], slot.raw), budget)))
        except Exception as exc:
            logger.info("pool %r: could not kill session %d over an idle connection (%s)", self.name, target[0], exc)
            gone, failed = False, True
        except BaseException:
            self._drop(slot, "closed_broken")  # interrupted: its state is unknown
            raise
        yield from self._return_plan(slot, failed)
        return gone

    def _renew_kills(self) -> List[Slot]:
        """The KILLING slots, each given a new bound, for the shell to kill
        again: their kills were lost with the pool's event loop (its
        asyncio.run() ended), so no kill of theirs is running."""
        with self._lock:
            stranded = self._books.in_state(KILLING)
            kill_by = self._clock() + self._config.kill_bound
            for slot in stranded:
                slot.kill_by = kill_by
        return stranded

    def _kills_end(self) -> float:
        """When every kill in flight will have ended (0.0: none in flight):
        the last bound, and a tick for a last step that started just before it."""
        with self._lock:
            last = max((slot.kill_by for slot in self._books.in_state(KILLING)), default=-_TICK)
        return last + _TICK

    def _killed(self, slot: Slot, gone: bool) -> None:
        """A kill ended: stop counting the KILLING slot (idempotent)."""
        reason = slot.retire or "closed_broken"
        with self._lock:
            if not self._unbook_locked(slot, reason, killed=True):
                return
            if gone:
                self._stats.kills += 1
            else:
                self._stats.kill_failures += 1
        if not gone:
            logger.warning(
                "pool %r: session %d, closed in the middle of an answer, was not proved gone (the server not"
                " reached within %.3g s: connect_timeout, at least 1 s; or the KILL refused; or the session still"
                " listed %.3g s later);"
                " its slot is freed, the statement may still be running",
                self.name,
                slot.session,
                self._config.kill_timeout,
                KILL_WATCH,
            )
        self._after_close(slot, reason)

    def _unbook_locked(self, slot: Slot, reason: str, killed: bool = False) -> bool:
        """_unbook with the lock held, without the notices; False if already
        done. A KILLING slot is unbooked only when its kill ended (``killed``)."""
        was = slot.state
        if not self._books.unbook(slot, reason, killed):
            return False
        if was != NEW:
            if reason in _REPLACED:
                self._replacements += 1  # maintenance opens a successor
            self._pass_capacity()
        return True

    def _after_close(self, slot: Slot, reason: str) -> None:
        """What follows a slot's unbooking, outside the lock: log, wake the
        maintenance (a successor may be due), tell the on_close hooks."""
        logger.debug("pool %r: closed a connection (%s)", self.name, reason)
        maintenance = self._maintenance
        if maintenance is not None:
            maintenance.wake()
        if self._events.on_close:
            fire_logged(self._events.on_close, self.name, slot.raw, reason)

    def _take_idle(self, pick: Callable[[Slot, int], bool]) -> List[Slot]:
        """Move the idle slots ``pick`` selects (oldest first) to HELD."""
        with self._lock:
            if self._state != POOL_OPEN:
                return []
            return self._books.hold_idle(pick)

    def _put_back_plan(self, slot: Slot) -> Plan:
        """A HELD slot the pool finished working on goes back to idle (or is
        closed if the pool closed meanwhile)."""
        with self._lock:
            if slot.state != HELD:
                return
            if self._state == POOL_OPEN:
                self._park(slot, self._clock())
                return
        yield from self._close_plan(slot, "closed_on_pool_close")

    def _recheck_plan(self, slot: Slot, op: int, reason: str) -> Plan:
        """Probe a held idle slot (CHECK or PING); park it again, or close it
        under ``reason``. True if it was alive."""
        try:
            yield (op, slot.raw, self._config.io_timeout)
        except Exception as exc:
            logger.info("pool %r: idle connection failed a check (%s); replacing it", self.name, exc)
            self._suspect(self._clock())
            yield from self._close_plan(slot, reason)
            return False
        yield from self._put_back_plan(slot)
        return True

    def _check_plan(self) -> Plan:
        """Validate every idle connection now; returns how many were closed."""
        slots = self._take_idle(lambda slot, position: True)
        closed = 0
        done = 0
        try:
            for slot in slots:
                if not (yield from self._recheck_plan(slot, CHECK, "closed_failed_check")):
                    closed += 1
                done += 1
            return closed
        finally:
            # Interrupted: what was not checked yet is closed, not lost. Not
            # the ones already parked: they may be another caller's (HELD) by now.
            for slot in slots[done:]:
                if slot.state == HELD:
                    self._drop(slot, "closed_failed_check")

    def _book_idle(self, slot: Slot, token: Optional[DialToken] = None) -> bool:
        """Count a NEW slot opened in the background (with the right to dial
        ``token``, if any) as idle. False if the pool closed meanwhile: the
        caller closes it."""
        with self._lock:
            return self._state == POOL_OPEN and self._books.book_idle(slot, token, self._clock())

    def _reconcile_plan(self, grace: float, seen: Dict[Any, Tuple[Any, float]]) -> Plan:
        """Give back what an interrupt orphaned (one that landed inside the
        clean-up of another): slots counted idle but not in the idle queue,
        and -- once unchanged for ``grace`` seconds, longer than any connect,
        validation or reset in progress can last -- slots lent but never given
        to a proxy, slots the pool holds (HELD) and rights to dial. ``seen``
        (candidates, what they looked like and since when) is kept by the
        maintenance between rounds; returns how many slots were closed."""
        now = self._clock()
        books = self._books
        with self._lock:
            queued = set(map(id, self._idle))
            candidates: List[Any] = list(books.dialing)
            unqueued: List[Slot] = []
            overdue: List[Slot] = []
            for slot in books.slots:
                if slot.state == IDLE:
                    if id(slot) not in queued:
                        unqueued.append(slot)
                elif slot.state == HELD or (slot.state == OUT and not slot.proxied):
                    candidates.append(slot)
                elif slot.state == KILLING and now >= slot.kill_by + _TICK:
                    overdue.append(slot)  # its kill was interrupted, or never started
            stale: List[Any] = []
            for item in candidates:
                # What a slot looks like: a new borrow, validation or return
                # changes it, so each hold is timed from its own start.
                looks = item.since if isinstance(item, DialToken) else (item.state, item.borrowed_at, item.last_used)
                first = seen.get(item)
                if first is None or first[0] != looks:
                    first = seen[item] = (looks, now)
                if now - first[1] >= grace:
                    stale.append(item)
            for item in set(seen).difference(candidates).union(stale):
                del seen[item]
            seized: List[Slot] = []
            for item in stale:
                if isinstance(item, DialToken):
                    # Its dial, if it still ends, books only if there is room.
                    if books.spend(item):
                        self._pass_capacity()
                elif item.state == OUT:
                    unqueued.append(item)
                elif self._unbook_locked(item, "closed_orphaned"):
                    # HELD: unbooked here, under the lock, so that a holder
                    # that was merely slow finds it gone and does not park it.
                    seized.append(item)
            for slot in unqueued:
                books.hold(slot)
        for slot in overdue:
            self._killed(slot, False)
        for slot in seized:
            self._drv.force_close(slot.raw)
            self._after_close(slot, "closed_orphaned")
        if unqueued or seized:
            logger.warning(
                "pool %r: closing %d connection(s) orphaned by an interrupt", self.name, len(unqueued) + len(seized)
            )
            yield from self._close_all_plan(unqueued, "closed_orphaned")
        return len(unqueued) + len(seized)

    def _swap_in(self, slot: Slot, fresh: Slot) -> None:
        """0.5.0 ``ping(reconnect=True)``: a new session takes a dead one's place."""
        with self._lock:
            self._books.swap(slot, fresh)
        self._watch(slot)

    # -- leaks --------------------------------------------------------------

    def _leaked(self, slot: Slot) -> None:
        """Called from a proxy's ``__del__``: never take the lock here, the
        collector may run while this very thread holds it."""
        self._reclaim.append(slot)
        maintenance = self._maintenance
        if maintenance is not None:
            maintenance.wake()
        elif not self._lock.locked():
            # No maintenance to hand it to (closed pool): reclaim now, unless
            # a thread (maybe this one) holds the lock; then the next borrow does.
            self._reclaim_now()

    def _reclaim_now(self) -> None:
        """Close the slots of proxies collected while borrowed, without waiting."""
        while True:
            slot = self._reclaimed()
            if slot is None:
                return
            kill = self._abandoned(slot)  # asked first: a close forgets a half-read result
            self._drv.force_close(slot.raw)
            self._unbook(slot, "leaks_reclaimed", kill)

    def _reclaim_plan(self) -> Plan:
        while True:
            slot = self._reclaimed()
            if slot is None:
                return
            # Closing, not reusing: the borrower's state is unknown. Abandoned
            # mid-answer like a return (see _return_plan): killed, slot KILLING.
            yield from self._close_plan(slot, "leaks_reclaimed", self._abandoned(slot))

    def _reclaimed(self) -> Optional[Slot]:
        """The next slot of a proxy collected while borrowed, HELD; None when none."""
        while True:
            try:
                slot = self._reclaim.popleft()
            except IndexError:
                return None
            with self._lock:
                if slot.generation != self._generation or slot.state != OUT:
                    continue  # forked, or already given up by an interrupted borrow
                if not slot.leak_reported:  # not already counted by leak_timeout
                    self._stats.leaks_detected += 1
                self._books.hold(slot)
            where = (
                f"; borrowed at:\n{slot.borrow_stack}"
                if slot.borrow_stack
                else " (set leak_timeout to log where it was borrowed)"
            )
            _leak_warning(
                f"pool {self.name!r}: a borrowed connection was garbage-collected without being returned;"
                f" closing it (its transaction is rolled back by the server){where}"
            )
            return slot

    # -- closing the pool -----------------------------------------------------

    def _shut(self) -> Optional[Tuple[List[Slot], Any]]:
        """Stop lending: fail the waiters and take the idle slots (HELD) and
        the maintenance to stop; None if the pool was closed already."""
        with self._lock:
            was = self._state
            self._state = POOL_CLOSED
            if was != POOL_OPEN:
                return None
            books = self._books
            idle = books.hold_idle(lambda slot, position: True)
            self._stats.borrow_errors += books.fail_waiters(PoolClosed(f"pool {self.name!r} was closed while waiting"))
            maintenance, self._maintenance = self._maintenance, None
        return idle, maintenance

    def _interrupt_late(self, timeout: float) -> int:
        """Shut down the sockets of connections still out after close(timeout)."""
        with self._lock:
            late = [s for s in self._books.slots if s.retire != "closed_on_pool_close" and s.state != KILLING]
            for slot in late:
                slot.doom("closed_on_pool_close")
        for slot in late:
            self._drv.interrupt(slot.raw)
        if late:
            logger.warning(
                "pool %r: closed; %d borrowed connection(s) not returned within %.3g s were shut down",
                self.name,
                len(late),
                timeout,
            )
        return len(late)

    # -- control ------------------------------------------------------------

    def _start(self) -> bool:
        """open(): lend from now on; False if it was open already."""
        with self._lock:
            if self._state == POOL_CLOSED:
                raise PoolClosed(f"pool {self.name!r} was closed; make a new pool")
            if self._state == POOL_OPEN:
                return False
            self._state = POOL_OPEN
            return True

    def _warm_enough(self, limit: float, deadline: float) -> bool:
        """wait(): True once pre_create_num are open; raises when it cannot be."""
        target = self._config.pre_create_num
        if self._books.open >= target:
            return True
        if self._state != POOL_OPEN:
            raise PoolClosed(f"pool {self.name!r} is {'closed' if self._state == POOL_CLOSED else 'not open'}")
        if self._clock() >= deadline:
            raise PoolTimeout(
                f"pool {self.name!r}: {self._books.open} of {target} connections open after {limit:.3g} s;"
                f" last connect error: {self._life.last_error!r}"
            )
        if self._maintenance is not None:
            self._maintenance.wake()
        return False

    def _drain_plan(self) -> Plan:
        """drain(): mark every connection for replacement, close the idle ones."""
        with self._lock:
            self._life.epoch += 1
            for slot in self._books.slots:
                slot.doom("closed_drained")
            marked = len(self._books.slots)
        yield from self._close_all_plan(self._take_idle(lambda slot, position: True), "closed_drained")
        return marked

    def _resize_plan(self, maxsize: Optional[int], size: Optional[int]) -> Plan:
        """resize(): new limits; queued borrowers served, extras closed."""
        with self._lock:
            cfg = self._config
            new_max = cfg.maxsize if maxsize is None else count("maxsize", maxsize, owner=self.name)
            new_size = cfg.size if size is None else count("size", size, owner=self.name)
            if new_max < 1:
                raise ValueError("maxsize must be >= 1")
            if new_size > new_max:
                raise ValueError(f"size ({new_size}) must not exceed maxsize ({new_max})")
            if cfg.pre_create_num > new_max:
                raise ValueError(f"maxsize ({new_max}) must not be below pre_create_num ({cfg.pre_create_num})")
            self._config = dataclasses.replace(cfg, maxsize=new_max, size=new_size)
            books = self._books
            books.maxsize = new_max
            while self._pass_capacity():
                pass
            excess = books.open + books.connecting - new_max
            idle: List[Slot] = []
            while excess > 0:
                slot = books.hold_idle_end(newest=False)  # the longest rested first
                if slot is None:
                    break
                idle.append(slot)
                excess -= 1
            for slot in idle:
                slot.doom("closed_resized")
            for slot in books.slots:
                if excess <= 0:
                    break
                if slot.retire is None:
                    slot.doom("closed_resized")
                    excess -= 1
            self._life.shed = max(excess, 0)  # the rest are still being opened
        yield from self._close_all_plan(idle, "closed_resized")

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
            self._books.reset_stats(self._stats)
        return snap

    def _snapshot(self) -> Dict[str, Number]:
        books = self._books
        data: Dict[str, Number] = {
            "pool_min": self._config.pre_create_num,
            "pool_size": self._config.size,
            "pool_max": books.maxsize,
            "open": books.open,
            "idle": len(books.idle),
            "borrowed": books.borrowed,
            "connecting": books.connecting,
            "waiting": len(books.waiters),
            "killing": books.killing,
        }
        data.update(self._stats.snapshot())
        return data

    # -- maintenance (see _maintenance.py) -------------------------------------

    def _maintenance_tick(self) -> float:
        """The longest pause between rounds: a quarter of the shortest interval
        to honour (a session's wait_timeout may ask for more frequent pings)."""
        cfg = self._config
        tick = _TICK
        for interval in (cfg.keepalive_interval, cfg.leak_timeout or 0.0, cfg.max_idle, self._shortest_keepalive):
            if interval and interval != _INF:
                tick = min(tick, max(interval / 4.0, 0.05))
        return tick

    def _round_plan(self, seen: Dict[Any, Tuple[Any, float]]) -> Plan:
        """One maintenance round but the refill: reclaim, orphans, leak
        warnings, retirement, keep-alive."""
        if self._reclaim:
            yield from self._reclaim_plan()
        yield from self._reconcile_plan(2 * self._config.io_timeout + 1.0, seen)
        now = self._clock()
        self._report_leaks(now)
        yield from self._retire_plan(now)
        yield from self._keepalive_plan(now)

    def _leak_hint(self) -> str:
        """For a borrow that timed out: if every connection has been lent for
        minutes and nothing tracks borrows, say how to find the holders."""
        if self._config.leak_timeout is not None:
            return ""
        now = self._clock()
        held = [now - slot.borrowed_at for slot in self._books.in_state(OUT)]
        if len(held) < self._books.maxsize or min(held) < _LEAK_HINT_AFTER:
            return ""
        return (
            f"; every connection has been borrowed for {min(held):.0f} s or more: if some are never"
            " given back, leak_timeout= logs where each was borrowed"
        )

    def _report_leaks(self, now: float) -> None:
        limit = self._config.leak_timeout
        if limit is None:
            return
        late: List[Slot] = []
        with self._lock:
            for slot in self._books.slots:
                # Returned slots get last_used >= borrowed_at; KILLING ones were returned.
                lent = slot.borrowed_at > slot.last_used and slot.state != KILLING
                if lent and not slot.leak_reported and now - slot.borrowed_at > limit:
                    slot.leak_reported = True
                    late.append(slot)
        for slot in late:
            _leak_warning(
                f"pool {self.name!r}: a connection has been borrowed for {now - slot.borrowed_at:.1f} s"
                f" (leak_timeout={limit}); borrowed at:\n{slot.borrow_stack or '(stack not recorded)'}"
            )
        if late:
            with self._lock:  # counted once logged, so a reader of the stats finds the record
                self._stats.leaks_detected += len(late)

    def _retire_plan(self, now: float) -> Plan:
        """Close idle connections past their lifetime, and idle ones beyond
        ``size`` unused for ``max_idle``."""
        cfg = self._config
        surplus = max(len(self._idle) - cfg.size, 0)
        max_idle = cfg.max_idle

        def pick(slot: Slot, position: int) -> bool:
            if slot.expires <= now:
                return True
            return bool(max_idle) and position < surplus and now - slot.last_used > max_idle

        taken = self._take_idle(pick)
        try:
            for slot in taken:
                reason = slot.retire or ("closed_lifetime" if slot.expires <= now else "closed_idle")
                yield from self._close_plan(slot, reason)
        finally:
            for slot in taken:
                if slot.state != GONE:
                    self._drop(slot, "closed_idle")

    def _keepalive_plan(self, now: float) -> Plan:
        """Ping idle connections before the server's wait_timeout drops them."""
        taken = self._take_idle(lambda slot, position: bool(slot.keepalive) and now - slot.last_used > slot.keepalive)
        done = 0
        try:
            for slot in taken:
                if (yield from self._recheck_plan(slot, PING, "closed_broken")):
                    with self._lock:
                        self._stats.keepalive_pings += 1
                done += 1
        finally:
            # Interrupted: what was not pinged yet is closed. Not the ones
            # already parked: they may be another caller's (HELD) by now.
            for slot in taken[done:]:
                if slot.state == HELD:
                    self._drop(slot, "closed_broken")

    def _refill_wanted(self) -> int:
        """How many connections the refill would open now (0: none)."""
        cfg = self._config
        with self._lock:
            count = self._books.open + self._books.connecting
            keep = max(cfg.size, cfg.pre_create_num)
            wanted = max(cfg.pre_create_num - count, min(self._replacements, keep - count))
            return max(wanted, 1 if self._replacements else 0)

    def _refill_plan(self) -> Plan:
        """Open one connection if the pool still wants one (``pre_create_num``
        open, and successors for connections retired for age while fewer
        than ``size`` are open); False when not."""
        cfg = self._config
        target = cfg.pre_create_num
        keep = max(cfg.size, target)
        books = self._books
        with self._lock:
            count = books.open + books.connecting
            if self._state != POOL_OPEN or count >= books.maxsize:
                return False
            if count >= target and (not self._replacements or count >= keep):
                self._replacements = 0
                return False
            if self._replacements:
                self._replacements -= 1  # one dial answers one retirement
            token = books.new_token()
        try:
            slot = yield from self._dial_plan()
        except BaseException:
            self._unreserve(token, None, served=False)
            raise
        if self._book_idle(slot, token):
            return True
        closed = self._state != POOL_OPEN
        self._unreserve(token, None, served=False)
        yield from self._close_plan(slot, "closed_on_pool_close" if closed else "closed_orphaned")
        return False

    def _prefill_plan(self, books: Any, dials: List[int], made: List[Slot]) -> Plan:
        """One step of the constructor's warm-up (see _warmup): open one of
        ``pre_create_num`` connections into ``made``; False when enough were
        started or the warm-up was abandoned (``dials[1]``)."""
        with books:
            if dials[0] >= self._config.pre_create_num or dials[1]:
                return False
            dials[0] += 1
        slot = yield from self._dial_plan()
        with books:
            if not dials[1]:
                made.append(slot)
                return True
        yield from self._close_plan(slot, "closed_on_pool_close")  # finished after the warm-up gave up
        return False

    def _after_fork(self, lock: Lock) -> None:
        """In a forked child: forget the parent's connections unsent-to."""
        self._lock = lock
        self._tls.after_fork()
        self._generation += 1
        for slot in self._books.forget_all():
            self._drv.abandon(slot.raw)
        self._reclaim = deque()
        self._replacements = 0
        self._life.shed = 0  # the parent's connects in flight are not the child's
        self._maintenance = None

    # -- Public seam: what the cluster and the integrations may use -----------
    # Everything outside _core.py and the two pool shells reads and steers a
    # pool through these members only (tests/fast/test_hygiene.py enforces
    # it); documented in docs/integrations.md, "The pools' public seam".

    @property
    def borrowed(self) -> int:
        """Connections lent now: the stats' ``borrowed`` (open, minus idle,
        minus those being cleaned, checked or closed). Read without the lock:
        a moment's view, for balancing, not for books."""
        return self._books.borrowed

    @property
    def reset_session(self) -> bool:
        """True if every return wipes the session (COM_RESET_CONNECTION):
        session settings do not persist from one borrow to the next."""
        return self._config.reset_session

    @property
    def client_flag(self) -> int:
        """The ``client_flag`` the pool's connections are opened with (0 if none)."""
        flag = self._config.connect_kwargs.get("client_flag", 0)
        return flag if isinstance(flag, int) else 0

    @property
    def connect_timeout(self) -> float:
        """Seconds: the bound of every wait the pool starts on its own
        (connect, ping, reset); callers bound their own side statements by it."""
        return self._config.io_timeout

    @property
    def shut_down(self) -> bool:
        """True once ``close()`` was called: the pool cannot be opened again.
        (``closed`` is also True for a pool made with ``open=False`` and not yet opened.)"""
        return self._state == POOL_CLOSED

    @property
    def ever_connected(self) -> bool:
        """False until a connect succeeds, and again after :meth:`fail_fast`."""
        return self._life.ever_connected

    def start(self) -> bool:
        """Lend from now on (the core half of ``open()``, without the
        background upkeep); False if already open. Raises ``PoolClosed``
        after ``close()``."""
        return self._start()

    def fail_fast(self) -> None:
        """Until a connect succeeds again, a failed connect ends the borrow at
        once instead of retrying until its timeout (the server is known down)."""
        with self._lock:
            self._life.ever_connected = False

    def suspect_idle(self) -> None:
        """Something says the server may have restarted: idle connections last
        used before now are validated before they are lent."""
        self._suspect(self._clock())

    # The cluster's balancing reads the count of many pools on every routed
    # borrow: one call for all of them, not a property call per pool (~680
    # instructions each on CPython 3.11).

    @staticmethod
    def least_borrowed(pools: Sequence[PoolCore], start: int) -> PoolCore:
        """Of ``pools``, one with the fewest :attr:`borrowed`; ties go to the
        first met scanning from index ``start`` (modulo their number)."""
        count = len(pools)
        best = pools[start % count]
        books = best._books
        least = books.open - len(books.idle) - books.held
        for step in range(1, count):
            pool = pools[(start + step) % count]
            books = pool._books
            borrowed = books.open - len(books.idle) - books.held
            if borrowed < least:
                best, least = pool, borrowed
        return best

    @staticmethod
    def first_with_room(pools: Sequence[PoolCore], start: int) -> Optional[PoolCore]:
        """Scanning ``pools`` from index ``start``, the first whose
        :attr:`borrowed` is below its ``maxsize``; None if every one is full."""
        count = len(pools)
        for step in range(count):
            pool = pools[(start + step) % count]
            books = pool._books
            if books.open - len(books.idle) - books.held < books.maxsize:
                return pool
        return None
