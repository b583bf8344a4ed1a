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

The plans live in modules by concern, each function bound by name as a
``PoolCore`` method in the class body below (a call costs what a method's
does): ``_borrowing`` (the borrow off the one-frame path), ``_dialing``
(opening and booking connections), ``_returning`` (the slow return),
``_disposal`` (closing connections, killing abandoned sessions), ``_upkeep``
(the maintenance round), ``_control`` (open, close, drain, resize, fork);
``_closing`` waits on the counts for close(timeout) and wait(). ``_plans``
names what a plan may request, and ``_books`` is the only code that changes
a slot's state. This module keeps the core's state, properties, events and
stats, the hot path (the one-frame borrow and return, and the rules they
share with the plans) and the public seam.

Invariants, true whenever the lock is free::

    len(idle) + borrowed + held == open      (held counts KILLING slots too)
    open + connecting <= maxsize
    idle is empty while anyone waits
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import traceback
from collections import deque
from typing import Any, Callable, Deque, Dict, Optional, Protocol, Sequence, Set, Type

from . import _borrowing, _control, _dialing, _disposal, _returning, _upkeep
from ._books import Books
from ._config import PoolConfig, describe
from ._driving import Driver
from ._events import Events, ResetHook, as_sequence
from ._lifecycle import POOL_CLOSED, POOL_NEW, POOL_OPEN, POOL_PENDING, Lifecycle
from ._plans import EXPIRED, LEND, VALIDATE
from ._slot import HELD, IDLE, OUT, Slot
from ._tls import TlsContexts
from ._validators import count, flag, seconds
from ._waiting import Waiter
from .connection import PROXY_TYPES
from .errors import ReturnConnectionToPoolError
from .stats import Counters, Number

logger = logging.getLogger("pymysqlpool")


_INF = float("inf")


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
        flag("kill_on_abandon", kill_on_abandon)
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
        # The driver's, read on every return: an instance attribute is read
        # faster than the class attribute _drv (CPython 3.11 does not
        # specialize reads of class attributes through an instance).
        self._needs_reset = self._drv.needs_reset
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
        flag("open", open)
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
                # connection.lend, written out for its speed (one frame less).
                conn = slot.lend_as()
                conn._pool = self
                conn._slot = slot
                conn._raw = slot.raw
                slot.proxied = True
                return conn
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
            refusal = ValueError(f"on_checkout rejected a connection: {exc}")
            refusal.__cause__ = exc  # the hook's own traceback, for the borrower's error
            return refusal
        return None

    def _count(self, counter: str, step: int = 1) -> None:
        with self._lock:
            setattr(self._stats, counter, getattr(self._stats, counter) + step)

    # -- returning ----------------------------------------------------------

    def _give_back(self, conn: Any, failed: bool = False) -> Any:
        """Give a borrowed connection back to its pool.

        Rolls back an open transaction and restores autocommit first, so the
        next borrower never sees this one's work; ``failed=True`` (what a
        ``with`` block that raised passes) takes the full return, judged by
        the same status bits (no transaction open: nothing sent). A
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
        if failed is not False and failed is not True:  # "no" would mean True: refused before anything
            flag("failed", failed, self.name)
        # Judged before taking the lock. Clean means parked as it is, no round
        # trip: not failed, nothing to reset, and -- if it was lent longer than
        # _probe_window -- its socket not hung up on (KILL, restart) while lent.
        clock = self._clock  # called as a local: self._clock() would not specialize
        now = clock()
        # Read before the lock, used under it: a slot lent anew since fails
        # the _slot test there first.
        used = now - slot.borrowed_at
        probe = slot.probe
        needs_reset = self._needs_reset  # a local too
        clean = (
            not failed
            and not self._always_reset
            and not needs_reset(slot.raw, self._autocommit)
            and (used <= self._probe_window or probe is None or not probe(0))
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

    # -- the plans, by concern: each module's functions, bound as methods ----
    # _borrowing.py: the borrow off the one-frame path
    _borrow_plan = _borrowing.borrow_plan
    _reserve_now = _borrowing.reserve_now
    _reserve_plan = _borrowing.reserve_plan
    _backoff_plan = _borrowing.backoff_plan
    _withdraw = _borrowing.withdraw
    _give_up = _borrowing.give_up
    _validate_plan = _borrowing.validate_plan
    _reject_plan = _borrowing.reject_plan
    _suspect = _borrowing.suspect
    _flush_suspects_plan = _borrowing.flush_suspects_plan
    # _dialing.py: opening connections and booking them
    _dial_plan = _dialing.dial_plan
    _keep_unfinished = _dialing.keep_unfinished
    _unfinished_slot = _dialing.unfinished_slot
    _book_new = _dialing.book_new
    _over_maxsize = _dialing.over_maxsize
    _watch = _dialing.watch
    _connect_failed = _dialing.connect_failed
    _book_dialed = _dialing.book_dialed
    _dial_failed = _dialing.dial_failed
    _warn_cannot_connect = _dialing.warn_cannot_connect
    _unreserve = _dialing.unreserve
    _pass_capacity = _dialing.pass_capacity
    _book_idle = _dialing.book_idle
    _swap_in = _dialing.swap_in
    # _returning.py: the slow return of a HELD slot
    _close_reason = _returning.close_reason
    _return_plan = _returning.return_plan
    _reset_plan = _returning.reset_plan
    _park = _returning.park
    # _disposal.py: closing connections, killing abandoned sessions
    _close_plan = _disposal.close_plan
    _close_all_plan = _disposal.close_all_plan
    _drop = _disposal.drop
    _cut = _disposal.cut
    _unbook = _disposal.unbook
    _abandoned = _disposal.abandoned
    _start_kill = _disposal.start_kill
    _spawn = _disposal.spawn
    _killer_plan = _disposal.killer_plan
    _kill_over_idle_plan = _disposal.kill_over_idle_plan
    _renew_kills = _disposal.renew_kills
    _kills_end = _disposal.kills_end
    _killed = _disposal.killed
    _unbook_locked = _disposal.unbook_locked
    _after_close = _disposal.after_close
    # _upkeep.py: the maintenance round and the checks it runs
    _maintenance_tick = _upkeep.maintenance_tick
    _round_plan = _upkeep.round_plan
    _take_idle = _upkeep.take_idle
    _put_back_plan = _upkeep.put_back_plan
    _recheck_plan = _upkeep.recheck_plan
    _check_plan = _upkeep.check_plan
    _reconcile_plan = _upkeep.reconcile_plan
    _leaked = _upkeep.leaked
    _reclaim_now = _upkeep.reclaim_now
    _reclaim_plan = _upkeep.reclaim_plan
    _reclaimed = _upkeep.reclaimed
    _leak_hint = _upkeep.leak_hint
    _report_leaks = _upkeep.report_leaks
    _retire_plan = _upkeep.retire_plan
    _keepalive_plan = _upkeep.keepalive_plan
    _refill_wanted = _upkeep.refill_wanted
    _refill_plan = _upkeep.refill_plan
    _prefill_plan = _upkeep.prefill_plan
    # _control.py: open, close, drain, resize, fork
    _start = _control.start
    _shut = _control.shut
    _interrupt_late = _control.interrupt_late
    _warm_enough = _control.warm_enough
    _drain_plan = _control.drain_plan
    _resize_plan = _control.resize_plan
    _after_fork = _control.after_fork

    # The shells' names until they are moved.
    _abandon = _give_up
    _dispose_plan = _close_plan
    _dispose_all_plan = _close_all_plan
    _kill = _drop

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
