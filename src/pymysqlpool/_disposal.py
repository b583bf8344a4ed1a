"""Disposal: closing a slot's connection and stopping counting it (the
closing vocabulary -- doom, close, drop, reject, give up, kill, unbook,
shut -- is ``_books.py``'s).

``close_plan``/``close_all_plan`` close politely, ``drop`` without a word
to the server, ``cut`` likewise but killing a session that may still run
what was cut (the borrower's statement or the pool's own reset or ping); ``unbook`` (``unbook_locked`` under the lock,
``after_close`` outside it) stops counting a slot. A session abandoned in
the middle of an answer is killed: closing a socket does not stop the
server (a statement left mid-answer runs to its end, keeps its locks, and
its session stays on the server's books), so the pool sends KILL over a side
connection (``killer_plan``, or over an idle connection when the server
refuses more sessions: ``kill_over_idle_plan``) and keeps the slot counted
(KILLING) until the session is gone (``killed``): the server never sees more
than maxsize sessions from the pool's slots.

Part of the core: each function here is a :class:`~pymysqlpool._core.PoolCore`
method (bound by name in its class body, so a call costs what a method's
does) and reads the core's private state as a method does.

May touch: the Books verbs ``unbook``, ``await_kill``, ``hold_idle_end``,
``in_state``; the core's ``_replacements`` (successors due) and the close
and kill counters.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, List, Tuple

from ._config import KILL_WATCH
from ._events import fire_logged
from ._lifecycle import POOL_OPEN
from ._plans import BACKOFF_CAP, BACKOFF_FIRST, CLOSE, KILL, MIN_ATTEMPT, SLEEP, TICK, Plan
from ._slot import GONE, HELD, KILLING, NEW, Slot

if TYPE_CHECKING:
    from ._core import PoolCore

logger = logging.getLogger("pymysqlpool")

__all__ = [
    "abandoned",
    "after_close",
    "close_all_plan",
    "close_plan",
    "cut",
    "drop",
    "kill_over_idle_plan",
    "killed",
    "killer_plan",
    "kills_end",
    "renew_kills",
    "spawn",
    "start_kill",
    "unbook",
    "unbook_locked",
]

_REPLACED = ("closed_lifetime", "closed_drained")  # reasons whose connections get a successor


def close_plan(self: PoolCore, slot: Slot, reason: str, kill: bool = False) -> Plan:
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


def close_all_plan(self: PoolCore, slots: List[Slot], reason: str) -> Plan:
    """Close several slots; after an interrupt, the rest are dropped
    (no word to the server) so that none stays counted."""
    try:
        for slot in slots:
            yield from self._close_plan(slot, reason)
    finally:
        for slot in slots:
            if slot.state != GONE:
                self._drop(slot, reason)


def drop(self: PoolCore, slot: Slot, reason: str) -> None:
    """Close without a word to the server and stop counting: never waits."""
    self._drv.force_close(slot.raw)
    self._unbook(slot, reason)


def cut(self: PoolCore, slot: Slot, reason: str) -> None:
    """Drop a HELD slot whose exchange was cut -- the borrower's, or the
    pool's own reset or ping: a session reset re-running a slow
    init_command, a long ROLLBACK. If the server may still be running it,
    its session is killed and the slot stays counted (KILLING) until the
    session is gone, as for an abandoned statement; else a plain drop."""
    kill = self._abandoned(slot)  # asked first: the close forgets a half-read result
    self._drv.force_close(slot.raw)
    self._unbook(slot, reason, kill)


def unbook(self: PoolCore, slot: Slot, reason: str, kill: bool = False) -> None:
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


def abandoned(self: PoolCore, slot: Slot) -> bool:
    """A returned (or reclaimed) slot's session may still be running the borrower's
    statement: a command not answered to its end (cancelled, interrupted,
    read_timeout), or an unbuffered result not read to its end. The
    pool's own steps count too (see ``cut``): a ROLLBACK or a session
    reset's init_command can run long."""
    return self._config.kill_on_abandon and bool(slot.session) and self._drv.left_running(slot.raw)


def start_kill(self: PoolCore, slot: Slot) -> None:
    """Run the kill of a KILLING slot off the caller's path."""
    try:
        started = self._spawn(self._killer_plan(slot))
    except Exception as exc:  # no thread or task to be had: give the slot up now
        logger.warning("pool %r: cannot start the kill of session %d (%s)", self.name, slot.session, exc)
        started = False
    if not started:
        self._killed(slot, False)


def spawn(self: PoolCore, plan: Plan) -> bool:
    """Run ``plan`` in the background (the shell's); False if it cannot."""
    plan.close()
    return False


def killer_plan(self: PoolCore, slot: Slot) -> Plan:
    """KILL the session of a KILLING slot and free the slot once the server
    let the session go, or once ``slot.kill_by`` passed without proof
    (the server refused the KILL, or could not be reached). Retried with
    back-off while the side connection fails: a server that restarts has
    no session left, and says so once it answers. An interrupt leaves
    the slot KILLING: the reconcile frees it after its bound."""
    gone = False
    delay = BACKOFF_FIRST
    reach_by = slot.kill_by - KILL_WATCH  # failing attempts retry until then; a reached server gets KILL_WATCH more
    while True:
        left = slot.kill_by - self._clock()
        if reach_by - self._clock() < MIN_ATTEMPT:
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
            if refused or left < MIN_ATTEMPT:  # a refusal is not retried: its slot waits out the bound
                if left > 0:
                    yield (SLEEP, left, None)
                break
            yield (SLEEP, min(delay, left), None)
            delay = min(delay * 2, BACKOFF_CAP)
    self._killed(slot, gone)


def kill_over_idle_plan(self: PoolCore, target: Tuple[int, float], budget: float) -> Plan:
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
        self._cut(slot, "closed_broken")  # interrupted: its state is unknown; killed if cut mid-KILL
        raise
    yield from self._return_plan(slot, failed)
    return gone


def renew_kills(self: PoolCore) -> List[Slot]:
    """The KILLING slots, each given a new bound, for the shell to kill
    again: their kills were lost with the pool's event loop (its
    asyncio.run() ended), so no kill of theirs is running."""
    with self._lock:
        stranded = self._books.in_state(KILLING)
        kill_by = self._clock() + self._config.kill_bound
        for slot in stranded:
            slot.kill_by = kill_by
    return stranded


def kills_end(self: PoolCore) -> float:
    """When every kill in flight will have ended (0.0: none in flight):
    the last bound, and a tick for a last step that started just before it."""
    with self._lock:
        last = max((slot.kill_by for slot in self._books.in_state(KILLING)), default=-TICK)
    return last + TICK


def killed(self: PoolCore, slot: Slot, gone: bool) -> None:
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


def unbook_locked(self: PoolCore, slot: Slot, reason: str, killed: bool = False) -> bool:
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


def after_close(self: PoolCore, slot: Slot, reason: str) -> None:
    """What follows a slot's unbooking, outside the lock: log, wake the
    maintenance (a successor may be due), tell the on_close hooks -- for a
    connection they heard of through on_connect only."""
    logger.debug("pool %r: closed a connection (%s)", self.name, reason)
    maintenance = self._maintenance
    if maintenance is not None:
        maintenance.wake()
    if self._events.on_close and slot.announced:  # paired with on_connect
        fire_logged(self._events.on_close, self.name, slot.raw, reason)
