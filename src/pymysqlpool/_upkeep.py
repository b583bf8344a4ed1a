"""Upkeep: the maintenance round and the checks it runs.

What the background maintenance (``_maintenance.py``) drives, once a round
(``round_plan``, paced by ``maintenance_tick``): reclaiming the slots of
proxies collected while borrowed (``leaked``, ``reclaimed``,
``reclaim_plan``, ``reclaim_now``), giving back what an interrupt orphaned
(``reconcile_plan``), leak reports (``report_leaks``, ``leak_hint``),
retiring idle connections past their lifetime or ``max_idle``
(``retire_plan``), keep-alive pings (``keepalive_plan``), and opening
connections the pool wants (``refill_wanted``, ``refill_plan``; the
constructor's warm-up: ``prefill_plan``). Also ``check_plan`` (``check()``
on every idle connection) and the idle slots the pool takes to work on and
puts back (``take_idle``, ``recheck_plan``, ``put_back_plan``).

Part of the core: each function here is a :class:`~pymysqlpool._core.PoolCore`
method (bound by name in its class body, so a call costs what a method's
does) and reads the core's private state as a method does.

May touch: the Books verbs ``hold_idle``, ``hold``, ``spend``,
``new_token``, ``in_state``, ``book_killing`` (a warm-up dial cut in its
set-up, killed), ``await_kill`` (an orphan left mid-answer, killed) and the
slot set, counts and dial tokens it reads; the core's ``_reclaim`` queue,
``_replacements``, leak and keep-alive counters.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from ._lifecycle import POOL_OPEN
from ._plans import CHECK, PING, TICK, Plan
from ._slot import GONE, HELD, IDLE, KILLING, OUT, Slot
from ._waiting import DialToken
from .errors import ConnectionLeakWarning

if TYPE_CHECKING:
    from ._core import PoolCore

logger = logging.getLogger("pymysqlpool")

__all__ = [
    "check_plan",
    "keepalive_plan",
    "leak_hint",
    "leaked",
    "maintenance_tick",
    "prefill_plan",
    "put_back_plan",
    "recheck_plan",
    "reclaim_now",
    "reclaim_plan",
    "reclaimed",
    "reconcile_plan",
    "refill_plan",
    "refill_wanted",
    "report_leaks",
    "retire_plan",
    "round_plan",
    "take_idle",
]

_INF = float("inf")
# A borrow that times out while every connection has been lent this long hints at leak_timeout.
_LEAK_HINT_AFTER = 60.0


def _leak_warning(message: str) -> None:
    """Logged, and warned (visible by default, filterable by category)."""
    logger.warning("%s", message)
    warnings.warn(message, ConnectionLeakWarning, stacklevel=2)


def maintenance_tick(self: PoolCore) -> float:
    """The longest pause between rounds: a quarter of the shortest interval
    to honour (a session's wait_timeout may ask for more frequent pings)."""
    cfg = self._config
    tick = TICK
    for interval in (cfg.keepalive_interval, cfg.leak_timeout or 0.0, cfg.max_idle, self._shortest_keepalive):
        if interval and interval != _INF:
            tick = min(tick, max(interval / 4.0, 0.05))
    return tick


def round_plan(self: PoolCore, seen: Dict[Any, Tuple[Any, float]]) -> Plan:
    """One maintenance round but the refill: reclaim, orphans, leak
    warnings, retirement, keep-alive."""
    if self._reclaim:
        yield from self._reclaim_plan()
    yield from self._reconcile_plan(2 * self._config.io_timeout + 1.0, seen)
    now = self._clock()
    self._report_leaks(now)
    yield from self._retire_plan(now)
    yield from self._keepalive_plan(now)


def take_idle(self: PoolCore, pick: Callable[[Slot, int], bool]) -> List[Slot]:
    """Move the idle slots ``pick`` selects (oldest first) to HELD."""
    with self._lock:
        if self._state != POOL_OPEN:
            return []
        return self._books.hold_idle(pick)


def put_back_plan(self: PoolCore, slot: Slot) -> Plan:
    """A HELD slot the pool finished working on goes back to idle (or is
    closed if the pool closed meanwhile)."""
    with self._lock:
        if slot.state != HELD:
            return
        if self._state == POOL_OPEN:
            self._park(slot, self._clock())
            return
    yield from self._close_plan(slot, "closed_on_pool_close")


def recheck_plan(self: PoolCore, slot: Slot, op: int, reason: str) -> Plan:
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


def check_plan(self: PoolCore) -> Plan:
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
        _cut_short(self, slots[done:])


def _cut_short(self: PoolCore, rest: List[Slot]) -> None:
    """An interrupted (or cancelled) check or keep-alive round: ``rest``,
    what it had not finished. The first, the one it was probing, is cut
    (killed if its probe was left mid-answer) under ``closed_broken``: an
    interrupt is no failed check. The others were never touched: back to
    idle. Only slots still HELD: one already parked may be another
    caller's by now."""
    if rest and rest[0].state == HELD:
        self._cut(rest[0], "closed_broken")
    for slot in rest[1:]:
        with self._lock:
            if slot.state != HELD:
                continue
            if self._state == POOL_OPEN:
                self._park(slot, slot.last_used)
                continue
        self._drop(slot, "closed_on_pool_close")


def reconcile_plan(self: PoolCore, grace: float, seen: Dict[Any, Tuple[Any, float]]) -> Plan:
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
            elif slot.state == KILLING and now >= slot.kill_by + TICK:
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
        kills: List[Slot] = []
        for item in stale:
            if isinstance(item, DialToken):
                # Its dial, if it still ends, books only if there is room.
                if books.spend(item):
                    self._pass_capacity()
            elif item.state == OUT:
                unqueued.append(item)
            elif item.state == HELD and self._abandoned(item):
                # Left in the middle of an exchange (a return or ping whose
                # clean-up an interrupt cut): its session may still run it,
                # so it is killed, its place counted until it is gone.
                books.await_kill(item, "closed_orphaned", now + self._config.kill_bound)
                kills.append(item)
            elif self._unbook_locked(item, "closed_orphaned"):
                # HELD: unbooked here, under the lock, so that a holder
                # that was merely slow finds it gone (or KILLING) and does not park it.
                seized.append(item)
        for slot in unqueued:
            books.hold(slot)
    for slot in overdue:
        self._killed(slot, False)
    for slot in kills:
        self._drv.force_close(slot.raw)
        self._start_kill(slot)
    for slot in seized:
        self._drv.force_close(slot.raw)
        self._after_close(slot, "closed_orphaned")
    closed = len(unqueued) + len(seized) + len(kills)
    if closed:
        logger.warning("pool %r: closing %d connection(s) orphaned by an interrupt", self.name, closed)
        yield from self._close_all_plan(unqueued, "closed_orphaned")
    return closed


def leaked(self: PoolCore, slot: Slot) -> None:
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


def reclaim_now(self: PoolCore) -> None:
    """Close the slots of proxies collected while borrowed, without waiting."""
    while True:
        slot = self._reclaimed()
        if slot is None:
            return
        kill = self._abandoned(slot)  # asked first: a close forgets a half-read result
        self._drv.force_close(slot.raw)
        self._unbook(slot, "leaks_reclaimed", kill)


def reclaim_plan(self: PoolCore) -> Plan:
    while True:
        slot = self._reclaimed()
        if slot is None:
            return
        # Closing, not reusing: the borrower's state is unknown. Abandoned
        # mid-answer like a return (see _return_plan): killed, slot KILLING.
        yield from self._close_plan(slot, "leaks_reclaimed", self._abandoned(slot))


def reclaimed(self: PoolCore) -> Optional[Slot]:
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


def leak_hint(self: PoolCore) -> str:
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


def report_leaks(self: PoolCore, now: float) -> None:
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


def retire_plan(self: PoolCore, now: float) -> Plan:
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


def keepalive_plan(self: PoolCore, now: float) -> Plan:
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
        _cut_short(self, taken[done:])


def refill_wanted(self: PoolCore) -> int:
    """How many connections the refill would open now (0: none)."""
    cfg = self._config
    with self._lock:
        count = self._books.open + self._books.connecting
        keep = max(cfg.size, cfg.pre_create_num)
        wanted = max(cfg.pre_create_num - count, min(self._replacements, keep - count))
        return max(wanted, 1 if self._replacements else 0)


def refill_plan(self: PoolCore) -> Plan:
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
        slot = yield from self._dial_plan(token=token)
    except BaseException:
        self._unreserve(token, None, served=False)
        raise
    if self._book_idle(slot, token):
        return True
    closed = self._state != POOL_OPEN
    self._unreserve(token, None, served=False)
    yield from self._close_plan(slot, "closed_on_pool_close" if closed else "closed_orphaned")
    return False


def prefill_plan(self: PoolCore, books: Any, dials: List[int], made: List[Slot]) -> Plan:
    """One step of the constructor's warm-up (see _warmup): open one of
    ``pre_create_num`` connections into ``made``; False when enough were
    started or the warm-up was abandoned (``dials[1]``)."""
    with books:
        if dials[0] >= self._config.pre_create_num or dials[1]:
            return False
        dials[0] += 1
    try:
        slot = yield from self._dial_plan()
    except BaseException as exc:
        cut = self._unfinished_slot(exc)
        if cut is not None:
            # The warm-up cut in a set-up (the constructor interrupted): no
            # right to dial to count it in, so it is counted now, KILLING,
            # and killed rather than left running on the server.
            with self._lock:
                self._books.book_killing(cut, "closed_broken", self._clock() + self._config.kill_bound)
            self._start_kill(cut)
        raise
    with books:
        if not dials[1]:
            made.append(slot)
            return True
    yield from self._close_plan(slot, "closed_on_pool_close")  # finished after the warm-up gave up
    return False
