"""Dialing: opening a connection and booking it.

``dial_plan`` opens one connection and ``book_new`` makes its slot (hooks,
jittered lifetime, probe, session id, a lifetime cut short by a drain or a
shrink that ran meanwhile); the caller books it lent (``book_dialed``), idle
(``book_idle``) or in a dead one's place (``swap_in``), or closes it. A right
to dial that was not used goes back (``unreserve``) and passes to the oldest
waiter (``pass_capacity``); a failed connect is judged (``dial_failed``) and
remembered for ``wait()`` and ``reconnect_failed`` (``connect_failed``).

Part of the core: each function here is a :class:`~pymysqlpool._core.PoolCore`
method (bound by name in its class body, so a call costs what a method's
does) and reads the core's private state as a method does.

May touch: the Books verbs ``book_lent``, ``book_idle``, ``swap``,
``spend``, ``serve_waiter_with_room``, ``book_killing`` (a dial cut in
its set-up, killed in its right's place) and the counts; the core's
lifecycle record (``_life``: epoch, shed, ever connected, last error),
``_shortest_keepalive``, the connect counters.
"""

from __future__ import annotations

import functools
import logging
import random
from typing import TYPE_CHECKING, Any, Optional

from ._config import describe
from ._events import fire_logged
from ._lifecycle import POOL_OPEN
from ._plans import DIAL, Plan
from ._slot import Slot
from ._waiting import DialToken
from .errors import PoolTimeout

if TYPE_CHECKING:
    from ._core import PoolCore

logger = logging.getLogger("pymysqlpool")

__all__ = [
    "book_dialed",
    "book_idle",
    "book_new",
    "connect_failed",
    "dial_failed",
    "dial_plan",
    "keep_unfinished",
    "over_maxsize",
    "pass_capacity",
    "swap_in",
    "unfinished_slot",
    "unreserve",
    "warn_cannot_connect",
    "watch",
]

_INF = float("inf")
_LIFETIME_JITTER = 0.05  # retire up to 5 % early so a batch does not expire at once


def dial_plan(self: PoolCore, budget: Optional[float] = None, token: Optional[DialToken] = None) -> Plan:
    """Open one connection; returns its slot NEW (not booked, nor yet
    counted in ``connections_made``): the caller books it (_book_dialed,
    _book_idle, _swap_in) or closes it, and either counts it. Raises the
    driver's error. ``token``: the right to dial it uses, which the
    caller gives back if this raises (see _keep_unfinished)."""
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
        elif token is not None:
            self._keep_unfinished(exc, token)
        raise
    return self._book_new(raw, keepalive, started, epoch)


def keep_unfinished(self: PoolCore, exc: BaseException, token: DialToken) -> None:
    """An interrupt cut a dial after the server made its session: its
    set-up (init_command, configure) may still be running there, and a
    closed socket does not stop it. Its slot rides on ``token``, to be
    killed in the token's place when that is given back (_unreserve), so
    the dial that follows never makes the server hold one session too many."""
    slot = self._unfinished_slot(exc)
    if slot is not None:
        token.unfinished = slot


def unfinished_slot(self: PoolCore, exc: BaseException) -> Optional[Slot]:
    """A NEW slot for the connection of a dial ``exc`` cut after the server
    made its session (see keep_unfinished), for the caller to have killed;
    None if there is none or nothing is killed (kill_on_abandon off)."""
    raw = self._drv.unfinished(exc)
    if raw is None or not self._config.kill_on_abandon:
        return None
    slot = Slot(raw, self._clock(), _INF, self._generation, 0.0)  # its age: no more than the session's
    slot.session = self._drv.session_id(raw)
    slot.announced = False  # never reached on_connect: no on_close either
    return slot if slot.session else None


def book_new(self: PoolCore, raw: Any, keepalive: float, started: float, epoch: int) -> Slot:
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


def over_maxsize(self: PoolCore) -> bool:
    books = self._books
    return books.open + books.connecting > books.maxsize


def watch(self: PoolCore, slot: Slot) -> None:
    """A wrong-node error seen on the connection dooms its slot: closed on return."""
    self._drv.watch_wrong_node(slot.raw, functools.partial(slot.doom, "closed_wrong_node"))


def connect_failed(self: PoolCore, exc: Exception, started: float) -> None:
    """Remember the error for wait(); call reconnect_failed once per outage
    that lasted reconnect_timeout."""
    life = self._life
    with self._lock:
        due = life.connect_failed(exc, started, self._clock())
    if due and life.reconnect_failed is not None:
        logger.error("pool %r: no connection could be opened for %.1f s: %s", self.name, life.reconnect_timeout, exc)
        try:
            life.reconnect_failed(self)
        except Exception:
            logger.exception("pool %r: reconnect_failed callback failed; ignored", self.name)


def book_dialed(self: PoolCore, token: DialToken, slot: Slot) -> bool:
    """Count a connection dialed with ``token`` as lent to the dialer;
    False on a closed pool (the token is left to the caller), or when the
    token was revoked as orphaned and its place taken (the caller closes it)."""
    with self._lock:
        return self._state == POOL_OPEN and self._books.book_lent(slot, token)


def warn_cannot_connect(self: PoolCore, exc: BaseException) -> None:
    """A borrow ends on a connect error (raised, or the cause of its
    PoolTimeout): a warning; the retries before it are info."""
    logger.warning("pool %r: cannot connect to %s: %s", self.name, describe(self._config), exc)


def dial_failed(self: PoolCore, token: DialToken, exc: Exception, deadline: float) -> None:
    """A borrower's connect failed. Gives the right to dial back, then
    returns while the borrow has time left (it backs off and retries or
    takes a returned connection), raises the driver's error when retrying
    cannot help, and ``PoolTimeout`` when time is up."""
    fatal = self._drv.is_fatal_connect_error(exc) or not self._life.ever_connected
    if not (fatal or self._state != POOL_OPEN) and self._clock() < deadline:
        self._unreserve(token, None, served=True)
        logger.info("pool %r: connecting failed (%s); retrying after a back-off", self.name, exc)
        return
    self._warn_cannot_connect(exc)
    if fatal or self._state != POOL_OPEN:
        self._unreserve(token, "borrow_errors", served=True)
        raise exc
    self._unreserve(token, "borrow_timeouts", served=True)
    raise PoolTimeout(
        f"pool {self.name!r}: could not connect to {describe(self._config)} before the borrow timeout: {exc}"
    ) from exc


def unreserve(self: PoolCore, token: DialToken, outcome: Optional[str], served: bool) -> None:
    """Give back a right to dial that was not used; idempotent.
    ``served``: it was counted as a borrow, which did not happen;
    ``outcome`` names the counter that says why."""
    with self._lock:
        live = self._books.spend(token)
        if live:
            if served:
                self._stats.borrows -= 1
            if outcome is not None:
                setattr(self._stats, outcome, getattr(self._stats, outcome) + 1)
        unfinished = token.unfinished
        if unfinished is None:
            if live:
                self._pass_capacity()
            return
        # A dial cut in its set-up: its place stays counted until the kill
        # ends. Also when the right was revoked as orphaned meanwhile (a
        # configure() that outlasted the reconcile's grace): the session is
        # on the server all the same (counted beyond maxsize if its place was
        # taken: the server holds it).
        token.unfinished = None  # booked once, however often given back
        self._books.book_killing(unfinished, "closed_broken", self._clock() + self._config.kill_bound)
    self._start_kill(unfinished)


def pass_capacity(self: PoolCore) -> bool:
    """A slot became free: the oldest waiter may dial, unless it is backing
    off from a failed connect (lock held). True if it was given the right."""
    return self._state == POOL_OPEN and self._books.serve_waiter_with_room()


def book_idle(self: PoolCore, slot: Slot, token: Optional[DialToken] = None) -> bool:
    """Count a NEW slot opened in the background (with the right to dial
    ``token``, if any) as idle. False if the pool closed meanwhile: the
    caller closes it."""
    with self._lock:
        return self._state == POOL_OPEN and self._books.book_idle(slot, token, self._clock())


def swap_in(self: PoolCore, slot: Slot, fresh: Slot) -> None:
    """0.5.0 ``ping(reconnect=True)``: a new session takes a dead one's place
    (or a dial cut in its set-up does, for the return to kill it)."""
    dead, announced = slot.raw, slot.announced
    with self._lock:
        self._books.swap(slot, fresh)
    self._watch(slot)
    if announced and self._events.on_close:  # the dead one's close, paired with its on_connect
        fire_logged(self._events.on_close, self.name, dead, "closed_broken")
