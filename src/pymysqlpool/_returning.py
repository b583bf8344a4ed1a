"""Returning: the slow return of a HELD slot.

The clean return (``PoolCore._give_back``) is the hot path and stays in
``_core.py``; whatever it cannot settle in one frame comes here as a HELD
slot: ``return_plan`` decides whether to close it (``close_reason``),
cleans it (``reset_plan``: the one reset decision both shells execute), runs
the check-in hooks, and parks it (``park``) or has it closed.

Part of the core: each function here is a :class:`~pymysqlpool._core.PoolCore`
method (bound by name in its class body, so a call costs what a method's
does) and reads the core's private state as a method does.

May touch: the Books verb ``park``; the return counters. Closing is
``_disposal``'s.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional

from ._lifecycle import POOL_OPEN
from ._plans import RESET, Plan
from ._slot import HELD, Slot

if TYPE_CHECKING:
    from ._core import PoolCore

logger = logging.getLogger("pymysqlpool")

__all__ = ["close_reason", "park", "reset_plan", "return_plan"]


def close_reason(self: PoolCore, slot: Slot) -> Optional[str]:
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


def return_plan(self: PoolCore, slot: Slot, failed: bool) -> Plan:
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
            kill = self._abandoned(slot)  # a reset cut by io_timeout (a long ROLLBACK) runs on
        except BaseException:
            # Interrupted or cancelled mid-reset: the server runs it on, so
            # the slot stays counted until its session is gone.
            self._cut(slot, "closed_broken")
            raise
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
def reset_plan(self: PoolCore, raw: Any, failed: bool) -> Plan:
    """Clean a returned connection for the next borrower: nothing when
    nothing of this borrow's can show (no transaction, autocommit as the
    pool's, no result left); ``reset_session=True``: the full session
    reset, always; otherwise the driver's reset (further result sets
    read, ROLLBACK if the status bits say a transaction is open or
    autocommit is off, autocommit restored), also for a clean-looking
    ``failed`` return. True if a ROLLBACK was sent."""
    if self._config.reset_session:
        yield (RESET, raw, True)
        return False
    if failed or self._drv.needs_reset(raw, self._autocommit):
        return bool((yield (RESET, raw, False)))
    return False


def park(self: PoolCore, slot: Slot, now: float) -> None:
    """Hand a healthy OUT or HELD slot to the oldest waiter or park it idle (lock held)."""
    self._books.park(slot, now)
