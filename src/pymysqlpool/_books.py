"""The pool's books: which connection is where, and the counts that follow.

One job: keep the record of the pool's slots exact. :class:`Books` owns the
idle deque, the set of open slots, the open/held/killing counts, the rights to
dial given out and the waiter queue, and it alone moves a slot from one state
to another (see :mod:`._slot`). It decides nothing -- which slot to lend, when
to close one, whether the pool still lends: the core decides (``_core.py``)
and calls one verb per act. It may touch the slots' ``state`` and
``last_used``, the waiters' ``grant``/``queued``, and the counters of borrows,
opens and closes; it never does I/O and never takes a lock.

Every verb is called with the pool lock held. A verb makes its stores before
any call it makes, so an interrupt (KeyboardInterrupt at any bytecode) lands
before the act or after its stores; what an interrupt can still split (a park
whose ``append`` never ran) the maintenance's reconcile repairs.

How a slot moves, and the verb that moves it::

    NEW       --book_lent-->        OUT        (dialed by a borrower)
    NEW       --book_idle-->        IDLE, or OUT to the oldest waiter
    IDLE      --lend_newest-->      OUT        (a borrow)
    IDLE      --hold_idle(_end)-->  HELD       (checked, pinged, retired, shut)
    OUT       --hold-->             HELD       (a return that needs work)
    OUT       --unlend-->           HELD       (granted, never lent: the borrow is uncounted)
    HELD      --park-->             IDLE, or OUT to the oldest waiter
    HELD      --await_kill-->       KILLING    (closed; its session still to be killed)
    NEW       --book_killing-->     KILLING    (a dial cut in its set-up, in its token's place)
    any       --unbook-->           GONE       (a KILLING slot only once its kill ended)

The core's two hot paths write acts out for speed (no call, plain stores):
``PoolCore._get_conn`` is ``lend_newest``; ``PoolCore._give_back`` moves a
clean slot OUT -> IDLE when nobody waits, and makes it HELD before it calls
``park`` when someone does (so an interrupt at that call leaves a HELD slot,
which the return drops at once, not an unlent OUT one).

The closing vocabulary, one verb per act (the core's names):

- *doom* (``Slot.doom``): close the slot at its next return or borrow;
- *close* (``_close_plan``): COM_QUIT, then unbook;
- *drop* (``_drop``): shut the socket without a word, then unbook -- never waits;
- *reject* (``_reject_plan``): close a slot granted to a borrow that did not get it;
- *give up* (``_give_up``): an interrupted borrow lets go of its grant;
- *kill* (``_killer_plan``): KILL a session over a side connection (KILLING until then);
- *unbook* (``Books.unbook``): stop counting a slot whose connection is closed;
- *shut* (``_shut``): close the pool itself: stop lending.

:meth:`Books.check_invariants` states every rule of the books; the state
machine tests call it after every step.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Deque, List, Optional, Set

from ._slot import GONE, HELD, IDLE, KILLING, NEW, OUT, Slot
from ._waiting import DialToken, Grant, Waiter, WaitQueue
from .stats import Counters

__all__ = ["Books"]


class Books:
    """The record of the pool's slots; every method is called with the pool lock held."""

    __slots__ = ("base", "clock", "dialing", "held", "idle", "killing", "maxsize", "open", "slots", "stats", "waiters")

    def __init__(self, maxsize: int, stats: Counters, clock: Callable[[], float]) -> None:
        self.maxsize = maxsize
        self.stats = stats
        self.clock = clock
        self.idle: Deque[Slot] = deque()  # IDLE slots, the most recently used on the right
        self.slots: Set[Slot] = set()  # every open slot: IDLE, OUT, HELD or KILLING
        self.waiters = WaitQueue()
        # Rights to dial given out and not yet used or given back: ``connecting``.
        self.dialing: Set[DialToken] = set()
        self.open = 0
        self.held = 0  # open slots neither idle nor lent: being cleaned, pinged, closed or killed
        self.killing = 0  # of them, KILLING: closed, their session not yet proved gone
        # open - killing when the counters were last reset: connections_made
        # counts every connection booked since then, closes every one closed.
        self.base = 0

    # -- counts ---------------------------------------------------------------

    @property
    def connecting(self) -> int:
        return len(self.dialing)

    @property
    def borrowed(self) -> int:
        """Slots lent to borrowers (OUT): what the stats call ``borrowed``."""
        return self.open - len(self.idle) - self.held

    def has_room(self) -> bool:
        """Fewer than ``maxsize`` open or being opened."""
        return self.open + len(self.dialing) < self.maxsize

    def reset_stats(self, stats: Counters) -> None:
        """Count from zero from now on (``pop_stats``)."""
        self.stats = stats
        self.base = self.open - self.killing

    # -- rights to dial ---------------------------------------------------------

    def new_token(self) -> DialToken:
        """Give out a right to dial."""
        token = DialToken(self.clock())
        self.dialing.add(token)
        return token

    def spend(self, token: DialToken) -> bool:
        """Use up or give back a right to dial; False if it was no longer live
        (given back already, or revoked as orphaned)."""
        if not token.live:
            return False
        token.live = False
        self.dialing.discard(token)
        return True

    # -- booking new connections ------------------------------------------------

    def _count_opened(self, token: Optional[DialToken]) -> bool:
        """One more open in place of ``token``; False if its place is gone (the
        token was revoked as orphaned and its place taken meanwhile)."""
        if token is not None and not self.spend(token) and self.open + len(self.dialing) >= self.maxsize:
            return False
        self.open += 1
        # Counted when booked, not when dialed: an interrupt between the two
        # would leave a connection made that is neither open nor closed.
        self.stats.connections_made += 1
        self.waiters.wake_watchers()  # twins: wait() (see _closing.py)
        return True

    def book_lent(self, slot: Slot, token: DialToken) -> bool:
        """NEW -> OUT: a connection dialed with ``token`` by a borrower, lent
        to it. False if it cannot be counted (the caller closes it)."""
        if not self._count_opened(token):
            return False
        slot.state = OUT
        self.slots.add(slot)
        return True

    def book_idle(self, slot: Slot, token: Optional[DialToken], now: float) -> bool:
        """NEW -> IDLE (or OUT to the oldest waiter): a connection opened in
        the background. False if it cannot be counted (the caller closes it)."""
        if not self._count_opened(token):
            return False
        slot.state = HELD
        self.held += 1
        self.slots.add(slot)
        self.park(slot, now)
        return True

    # -- lending ------------------------------------------------------------------

    def lend_newest(self) -> Optional[Slot]:
        """IDLE -> OUT: the most recently used idle slot, counted as a borrow;
        None if none is idle."""
        if not self.idle:
            return None
        slot = self.idle.pop()
        slot.state = OUT
        self.stats.borrows += 1
        return slot

    def queue(self, waiter: Waiter) -> None:
        """Queue a borrower behind the others."""
        waiter.queued = True
        self.waiters.append(waiter)

    def withdraw(self, waiter: Waiter) -> bool:
        """Take a waiter out of the queue; False if it was served meanwhile."""
        return self.waiters.withdraw(waiter)

    def hand_over(self, grant: Grant) -> None:
        """Serve the oldest waiter a slot (HELD -> OUT) or a right to dial,
        counted as a borrow. The waiter's books are kept here so that, once
        woken, it never has to take the lock again.

        Every store is made before the first call: an interrupt lands before
        all of them (nothing happened) or after the waiter holds its grant (it
        finds it even if never woken)."""
        waiter = self.waiters[0]
        waiter.grant = grant
        if isinstance(grant, Slot):
            grant.state = OUT
            self.held -= 1
        self.stats.borrows += 1
        self.waiters.popleft()
        waiter.queued = False
        waiter.wake()
        self.stats.borrow_wait_ms += (self.clock() - waiter.since) * 1000.0

    def serve_waiter_with_room(self) -> bool:
        """Give the oldest waiter a right to dial, unless it is backing off
        from a failed connect or there is no room. True if it was served."""
        waiters = self.waiters
        if waiters and not waiters[0].backoff and self.open + len(self.dialing) < self.maxsize:
            self.hand_over(self.new_token())
            return True
        return False

    def fail_waiters(self, error: BaseException) -> int:
        """Fail every waiter with ``error``; how many there were."""
        count = len(self.waiters)
        self.waiters.fail_all(error)
        return count

    # -- holding ------------------------------------------------------------------

    def hold(self, slot: Slot) -> None:
        """OUT (or IDLE but not queued: an interrupted park) -> HELD: the pool
        works on it. A slot let go while lent (GONE or KILLING: close(timeout)
        shut it down) stays as it is: its late return only closes the socket."""
        if slot.state == GONE or slot.state == KILLING:
            return
        slot.state = HELD
        self.held += 1

    def unlend(self, slot: Slot) -> bool:
        """OUT -> HELD: a slot granted to a borrow that will not get it; the
        borrow is uncounted. False if it is no longer OUT."""
        if slot.state != OUT:
            return False
        self.stats.borrows -= 1
        slot.state = HELD
        self.held += 1
        return True

    def _hold_all(self, slots: List[Slot]) -> List[Slot]:
        for slot in slots:
            slot.state = HELD
        self.held += len(slots)
        return slots

    def hold_idle_end(self, newest: bool) -> Optional[Slot]:
        """IDLE -> HELD: the most recently used idle slot (``newest``, as a
        borrow takes) or the one idle the longest; None if none is idle."""
        if not self.idle:
            return None
        slot = self.idle.pop() if newest else self.idle.popleft()
        slot.state = HELD
        self.held += 1
        return slot

    def hold_idle(self, pick: Callable[[Slot, int], bool]) -> List[Slot]:
        """IDLE -> HELD: the idle slots ``pick(slot, position)`` selects,
        oldest first (idle is used LIFO, so the left end rested longest)."""
        taken: List[Slot] = []
        keep: List[Slot] = []
        for position, slot in enumerate(self.idle):
            (taken if pick(slot, position) else keep).append(slot)
        if taken:
            self.idle.clear()
            self.idle.extend(keep)
        return self._hold_all(taken)

    # -- returning ------------------------------------------------------------------

    def park(self, slot: Slot, now: float) -> None:
        """HELD -> the oldest waiter (OUT), or IDLE when nobody waits: a
        healthy slot, last used ``now``."""
        slot.last_used = now
        if self.waiters:
            self.hand_over(slot)
        else:
            slot.state = IDLE
            self.held -= 1
            self.idle.append(slot)

    # -- closing ------------------------------------------------------------------

    def await_kill(self, slot: Slot, reason: str, kill_by: float) -> None:
        """HELD -> KILLING: the slot's connection is closed (counted under
        ``reason`` now), its slot stays counted until the kill ends."""
        # Plain stores: an interrupt lands before them or leaves a KILLING
        # slot that the reconcile frees once its bound passed.
        slot.retire = reason
        slot.kill_by = kill_by
        slot.state = KILLING
        self.killing += 1
        self.stats.closes[reason] += 1

    def book_killing(self, slot: Slot, reason: str, kill_by: float) -> None:
        """NEW -> KILLING: a connection whose dial an interrupt cut after the
        server made its session (its set-up may still run there), counted in
        the place of the right to dial its caller just spent, until the kill ends."""
        self._count_opened(None)
        slot.state = HELD
        self.held += 1
        self.slots.add(slot)
        self.await_kill(slot, reason, kill_by)

    def unbook(self, slot: Slot, reason: str, killed: bool = False) -> bool:
        """-> GONE: stop counting a slot whose connection is closed, under the
        close counter ``reason``; False if already done. A KILLING slot is
        unbooked only when its kill ended (``killed``), and not counted again."""
        state = slot.state
        if state == GONE or (state == KILLING) != killed:
            return False
        if state == IDLE:
            try:
                self.idle.remove(slot)
            except ValueError:
                pass  # an interrupted park: counted idle but never queued
        # Plain stores first, so an interrupt cannot split them.
        slot.state = GONE
        if not killed:
            self.stats.closes[reason] += 1
        if state == NEW:
            self.stats.connections_made += 1  # dialed, closed before it was booked
            return True
        self.open -= 1
        if state == HELD:
            self.held -= 1
        elif state == KILLING:
            self.held -= 1
            self.killing -= 1
        self.slots.discard(slot)
        self.waiters.wake_watchers()  # twins: close(timeout) (see _closing.py)
        return True

    def swap(self, slot: Slot, fresh: Slot) -> None:
        """0.5.0 ``ping(reconnect=True)``: a NEW connection takes the place of
        a lent slot's dead one, counted as one closed and one made."""
        self.stats.closes["closed_broken"] += 1
        self.stats.connections_made += 1
        fresh.state = GONE
        slot.raw = fresh.raw
        slot.created = fresh.created
        slot.expires = fresh.expires
        slot.probe = fresh.probe
        slot.keepalive = fresh.keepalive
        slot.session = fresh.session  # a KILL of an abandoned statement must reach the new session
        slot.announced = fresh.announced
        slot.lend_as = fresh.lend_as  # the proxy class that covers the new connection

    def forget_all(self) -> List[Slot]:
        """After a fork: forget every slot (the parent's); returns them."""
        slots = list(self.slots)
        self.idle.clear()
        self.slots.clear()
        self.waiters.clear()
        self.dialing.clear()
        self.open = self.held = self.killing = 0
        self.base = sum(self.stats.closes.values()) - self.stats.connections_made
        return slots

    def in_state(self, state: int) -> List[Slot]:
        """The open slots in ``state``."""
        return [slot for slot in self.slots if slot.state == state]

    # -- the rules ------------------------------------------------------------------

    def check_invariants(self, surplus: int = 0, lending: bool = True) -> None:
        """Raise AssertionError naming the first rule of the books that is broken.

        True whenever the lock is free and no interrupt split a verb (the
        reconcile repairs what one split). ``surplus``: connections being
        opened that resize() will close on arrival (beyond maxsize for now);
        ``lending``: the pool is open (a closed pool keeps nothing idle and
        nobody waiting)."""
        counts = {state: 0 for state in (NEW, IDLE, OUT, HELD, KILLING, GONE)}
        for slot in self.slots:
            counts[slot.state] += 1
        _rule(counts[NEW] == counts[GONE] == 0, "a NEW or GONE slot is counted open")
        _rule(self.open == len(self.slots), f"open={self.open} but {len(self.slots)} slots")
        idle = list(self.idle)
        _rule(len(set(map(id, idle))) == len(idle), "a slot queued idle twice")
        _rule(all(slot.state == IDLE and slot in self.slots for slot in idle), "an idle slot not IDLE or not open")
        _rule(counts[IDLE] == len(idle), f"{counts[IDLE]} slots IDLE but {len(idle)} in the idle deque")
        _rule(self.killing == counts[KILLING], f"killing={self.killing} but {counts[KILLING]} slots KILLING")
        _rule(
            self.held == counts[HELD] + counts[KILLING],
            f"held={self.held} but {counts[HELD]} HELD + {counts[KILLING]} KILLING",
        )
        _rule(self.borrowed == counts[OUT], f"borrowed={self.borrowed} but {counts[OUT]} slots OUT")
        _rule(all(token.live for token in self.dialing), "a spent right to dial still counted")
        # Over maxsize only after resize() lowered it: the extras are doomed or shed on arrival.
        doomed = sum(1 for slot in self.slots if slot.retire is not None)
        _rule(
            self.open + len(self.dialing) <= self.maxsize + doomed + surplus,
            f"open={self.open} + connecting={len(self.dialing)} over maxsize={self.maxsize}",
        )
        waiters = list(self.waiters)
        _rule(len(set(map(id, waiters))) == len(waiters), "a waiter queued twice")
        _rule(all(w.queued and w.grant is None and w.error is None for w in waiters), "a queued waiter already served")
        if waiters:
            _rule(lending, "borrowers wait on a closed pool")
            _rule(not idle, "idle slots while borrowers wait")
            # One backing off from a failed connect waits for a returned slot only.
            _rule(waiters[0].backoff or not self.has_room(), "borrowers wait while there is room to dial")
        if not lending:
            _rule(not idle, "a closed pool keeps idle slots")
        stats = self.stats
        made = stats.connections_made
        closed = sum(stats.closes.values())
        _rule(
            made == closed + self.open - self.killing - self.base,
            f"connections_made={made}, closes={closed}, open={self.open}, killing={self.killing}, base={self.base}",
        )


def _rule(holds: bool, broken: str) -> None:
    if not holds:
        raise AssertionError(f"books: {broken}")
