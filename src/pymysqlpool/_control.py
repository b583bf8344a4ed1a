"""Control: the pool's life as its owner steers it.

``start`` (open), ``shut`` and ``interrupt_late`` (close, and
close(timeout) cutting what is still out; the waiting between them is
``_closing.py``'s), ``warm_enough`` (``wait()``), ``drain_plan``,
``resize_plan``, and ``after_fork`` (a forked child forgets the parent's
connections).

Part of the core: each function here is a :class:`~pymysqlpool._core.PoolCore`
method (bound by name in its class body, so a call costs what a method's
does) and reads the core's private state as a method does.

May touch: the Books verbs ``hold_idle``, ``hold_idle_end``,
``fail_waiters``, ``forget_all``, ``hold`` (a lent slot close(timeout) let
go of); the books' ``maxsize`` (resize); the
core's lifecycle state (``_state``, ``_life``: epoch, shed), ``_config``
(resize), ``_maintenance`` (taken on close), and after a fork its lock, TLS
contexts, generation and reclaim queue.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

from ._lifecycle import POOL_CLOSED, POOL_OPEN
from ._plans import Plan
from ._slot import KILLING, OUT, Slot
from ._validators import _named, count
from .errors import PoolClosed, PoolTimeout

if TYPE_CHECKING:
    from ._core import Lock, PoolCore

logger = logging.getLogger("pymysqlpool")

__all__ = ["after_fork", "drain_plan", "interrupt_late", "resize_plan", "shut", "start", "warm_enough"]


def start(self: PoolCore) -> bool:
    """open(): lend from now on; False if it was open already."""
    with self._lock:
        if self._state == POOL_CLOSED:
            raise PoolClosed(f"pool {self.name!r} was closed; make a new pool")
        if self._state == POOL_OPEN:
            return False
        self._state = POOL_OPEN
        return True


def shut(self: PoolCore) -> Optional[Tuple[List[Slot], Any]]:
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


def interrupt_late(self: PoolCore, timeout: float) -> int:
    """Shut down the sockets of connections still out after close(timeout)."""
    with self._lock:
        late = [s for s in self._books.slots if s.retire != "closed_on_pool_close" and s.state != KILLING]
        for slot in late:
            slot.doom("closed_on_pool_close")
    for slot in late:
        self._drv.interrupt(slot.raw)
    for slot in late:
        _let_go(self, slot)
    if late:
        logger.warning(
            "pool %r: closed; %d borrowed connection(s) not returned within %.3g s were shut down",
            self.name,
            len(late),
            timeout,
        )
    return len(late)


def _let_go(self: PoolCore, slot: Slot) -> None:
    """A lent slot whose socket close(timeout) shut down stops being counted
    now, not when its borrower gives the proxy back (maybe never): its
    session ended with the socket, or is killed if it was mid-statement
    (counted until the kill ends). Its late return finds it let go
    (Books.hold leaves it as it is) and only closes the socket."""
    kill = self._abandoned(slot)  # asked first: the borrower's own close forgets a half-read result
    with self._lock:
        if slot.state != OUT:  # given back meanwhile: its return closes it
            return
        self._books.hold(slot)
    self._unbook(slot, "closed_on_pool_close", kill)


def warm_enough(self: PoolCore, limit: float, deadline: float) -> bool:
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


def drain_plan(self: PoolCore) -> Plan:
    """drain(): mark every connection for replacement, close the idle ones."""
    with self._lock:
        self._life.epoch += 1
        for slot in self._books.slots:
            slot.doom("closed_drained")
        marked = len(self._books.slots)
    yield from self._close_all_plan(self._take_idle(lambda slot, position: True), "closed_drained")
    return marked


def resize_plan(self: PoolCore, maxsize: Optional[int], size: Optional[int]) -> Plan:
    """resize(): new limits; queued borrowers served, extras closed."""
    with self._lock:
        cfg = self._config
        new_max = cfg.maxsize if maxsize is None else count("maxsize", maxsize, low=1, owner=self.name)
        new_size = cfg.size if size is None else count("size", size, owner=self.name)
        # The limits' relations are refused naming the pool, as each value is.
        if new_size > new_max:
            raise ValueError(f"{_named('size', self.name)} ({new_size}) must not exceed maxsize ({new_max})")
        if cfg.pre_create_num > new_max:
            raise ValueError(
                f"{_named('maxsize', self.name)} ({new_max}) must not be below pre_create_num ({cfg.pre_create_num})"
            )
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


def after_fork(self: PoolCore, lock: Lock) -> None:
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
