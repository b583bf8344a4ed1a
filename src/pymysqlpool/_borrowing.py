"""Borrowing: the borrow that is not served in one frame.

``borrow_plan`` takes an idle slot, a right to dial, or a place in the
wait queue (``reserve_now``, ``reserve_plan``); after a failed connect it
backs off queued as a waiter (``backoff_plan``); it validates an idle slot
before lending it (``validate_plan``, ``reject_plan``; a dead one makes the
older idle ones suspect: ``suspect``, ``flush_suspects_plan``); and an
interrupted borrow gives back what it holds (``withdraw``, ``give_up``).
The one-frame borrow (``PoolCore._get_conn``) and the rules it shares with
these plans (``_verdict``, ``_hung_up``, ``_mark_lent``, ``_checked_out``)
stay in ``_core.py``: the hot path.

Part of the core: each function here is a :class:`~pymysqlpool._core.PoolCore`
method (bound by name in its class body, so a call costs what a method's
does) and reads the core's private state as a method does.

May touch: the Books verbs ``lend_newest``, ``has_room``, ``new_token``,
``queue``, ``withdraw``, ``unlend``, ``hold_idle``; the core's
``_suspect_since`` and the borrow counters. Dialing is ``_dialing``'s,
closing ``_disposal``'s, parking ``_returning``'s.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Optional, Union

from ._events import fire_logged
from ._lifecycle import POOL_OPEN
from ._plans import BACKOFF_CAP, BACKOFF_FIRST, CHECK, EXPIRED, LEND, MIN_ATTEMPT, WAIT, Plan
from ._slot import HELD, NEW, Slot
from ._waiting import DialToken, Grant, Waiter
from .errors import GetConnectionFromPoolError, PoolClosed, PoolTimeout, TooManyRequests

if TYPE_CHECKING:
    from ._core import PoolCore

logger = logging.getLogger("pymysqlpool")

__all__ = [
    "backoff_plan",
    "borrow_plan",
    "flush_suspects_plan",
    "give_up",
    "reject_plan",
    "reserve_now",
    "reserve_plan",
    "suspect",
    "validate_plan",
    "withdraw",
]

_FLUSH_AFTER = 3  # validation failures in one borrow before the other suspects are closed unpinged
# Check-out hook refusals in one borrow before the hook's error goes to the
# borrower: a hook that always raises would otherwise have the borrow open
# connection after connection (hundreds a second) until its timeout.
_REFUSALS = 3


def borrow_plan(self: PoolCore, first: Optional[Slot], timeout: Optional[float], force_check: bool) -> Plan:
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
    delay = BACKOFF_FIRST
    rejected = 0
    refusals = 0
    queued = False
    last_error: Optional[BaseException] = None
    fresh: Optional[Slot] = None  # a connection dialed but not yet booked
    try:
        while True:
            # The first attempt gets all of connect_timeout; later ones what is left.
            retry = bool(rejected) or last_error is not None
            budget = min(io_timeout, hard_end - self._clock()) if retry else io_timeout
            if grant is None:
                if retry and (budget < MIN_ATTEMPT or (last_error is not None and budget < io_timeout)):
                    self._count("borrow_timeouts")
                    if last_error is not None:
                        self._warn_cannot_connect(last_error)
                    why = f": {last_error}" if last_error is not None else ""
                    raise PoolTimeout(
                        f"pool {self.name!r}: no healthy connection within {deadline - started:.3g} s"
                        f" ({rejected} failed validation){why}"
                    ) from last_error
                grant, queued = yield from self._reserve_plan(deadline, queued)
            if isinstance(grant, DialToken):
                try:
                    fresh = yield from self._dial_plan(budget, grant)
                except Exception as exc:
                    self._dial_failed(grant, exc, deadline)  # raises unless worth retrying
                    grant = None
                    last_error = exc
                    # Back off without holding the right to dial, as a
                    # waiter: a connection returned meanwhile is taken at
                    # once (the server may refuse more sessions: 1226).
                    pause = min(delay * (0.5 + random.random() / 2), deadline - self._clock())
                    grant = yield from self._backoff_plan(pause)  # a slot is validated and lent below
                    delay = min(delay * 2, BACKOFF_CAP)
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
                refusals += 1
                if refusals == _REFUSALS:
                    grant = None
                    self._count("borrow_errors")
                    hook_error = refused.__cause__
                    raise GetConnectionFromPoolError(
                        f"pool {self.name!r}: on_checkout rejected {refusals} connections in a row: {hook_error!r}"
                    ) from hook_error
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


def reserve_now(self: PoolCore, queued: bool) -> Union[Slot, DialToken, Waiter]:
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


def reserve_plan(self: PoolCore, deadline: float, queued: bool) -> Plan:
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


def backoff_plan(self: PoolCore, pause: float) -> Plan:
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


def withdraw(self: PoolCore, waiter: Waiter) -> None:
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


def give_up(self: PoolCore, grant: Grant) -> None:
    """Let go of a grant a borrower holds but will not get: an interrupted
    borrow. Idempotent. Assuming a slot was not used yet would be unsafe,
    so it is dropped: its state is unknown (cut: killed if its validation
    ping was cut mid-answer)."""
    if isinstance(grant, DialToken):
        self._unreserve(grant, None, served=True)
        return
    with self._lock:
        if not self._books.unlend(grant) and grant.state != HELD:  # parked again, or already closed
            return
    self._cut(grant, "closed_broken")


def validate_plan(self: PoolCore, slot: Slot, force: bool, budget: float) -> Plan:
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


def reject_plan(self: PoolCore, slot: Slot, reason: str) -> Plan:
    """Close a slot granted to a borrower that failed validation before
    the borrower got it: the borrow it was counted for did not happen."""
    with self._lock:
        if not self._books.unlend(slot):
            return
    yield from self._close_plan(slot, reason)


def suspect(self: PoolCore, moment: float) -> None:
    """A connection died: check every idle one last seen alive before now."""
    if moment > self._suspect_since:
        self._suspect_since = moment


def flush_suspects_plan(self: PoolCore) -> Plan:
    """Close every idle connection last seen alive before the suspect moment."""
    with self._lock:
        since = self._suspect_since
        doomed = self._books.hold_idle(lambda slot, position: slot.last_used < since)
    if doomed:
        yield from self._close_all_plan(doomed, "closed_failed_check")
