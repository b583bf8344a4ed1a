"""Model-based test: random sequences of borrows, returns, breakage, misuse,
clock jumps and forks against a model of what the pool must do, with its
invariants checked after every step.

The pool's core reads a fake clock the machine advances (given with
``_use_clock``; the shell's I/O bounds keep the real one), so
connection lifetimes, the validation window and pool-wide suspicion are
exact: the model predicts every step's outcome from the fake connections'
state. Borrows go through both of get_conn()'s paths (no ``timeout=``: the
inlined common case; ``timeout=0``: the general one) and 0.5.0's
``get_connection``; one rule makes a second thread wait and be served by a
return. The fake connections carry real socket pairs, so the pool's
zero-timeout socket probe sees a server that hung up.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import pymysql
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pymysqlpool import (
    ConnectionPool,
    ConnectionReturnedError,
    PoolClosed,
    PooledConnection,
    PoolTimeout,
    ReturnConnectionToPoolError,
)
from pymysqlpool.stats import COUNTERS
from support.waiting import wait_until

from .fakes import AUTOCOMMIT, IN_TRANS, FakeConnectError, FakeConnection, FakeServer

# Counters the model predicts exactly (the *_ms ones are times).
MODELLED = [name for name in COUNTERS if not name.endswith("_ms")]

SETTINGS = settings(
    max_examples=120,
    stateful_step_count=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class Boom(Exception):
    """Raised inside ``with conn:`` to make the return a failed one."""


LIFETIME = 100.0
# Clock steps: below and above the 0.5 s validation window, and past LIFETIME.
# A connection's age is either below 95 % of LIFETIME (50 steps of at most
# 1 s) or above it, never inside the jitter band, so expiry is exact.
TICKS = [0.0001, 0.4, 1.0, 2 * LIFETIME]
WAIT_LIMIT = 10.0  # bounds every wait for the helper thread
# get_conn() without timeout= takes the pool's inlined common case: drawn most.
BORROWS = ["get_conn", "get_conn", "connection", "get_conn_timeout", "connection_timeout", "get_connection", "pre_ping"]


class FakeClock:
    def __init__(self) -> None:
        # Far ahead of time.monotonic(): whatever still reads the real clock
        # never finds a connection expired or idle too long.
        self.now = time.monotonic() + 1e7

    def __call__(self) -> float:
        return self.now


class Lent:
    """A borrowed connection as the model sees it."""

    def __init__(self, proxy: PooledConnection, fake: FakeConnection, at: float, created: float, gen: int) -> None:
        self.proxy = proxy
        self.fake = fake
        self.borrowed_at = at
        self.created = created
        self.generation = gen


class Idle:
    def __init__(self, fake: FakeConnection, last_used: float, created: float) -> None:
        self.fake = fake
        self.last_used = last_used
        self.created = created


class PoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.server = FakeServer()
        self.other_server = FakeServer()
        self.pool: Optional[ConnectionPool] = None
        self.other: Optional[ConnectionPool] = None
        self.maxsize = 0
        self.autocommit = True
        self.window = 0.0
        self.lifetime = 0.0
        self.borrowed: List[Lent] = []
        self.returned: List[PooledConnection] = []
        # A cursor made at borrow time, to be used (wrongly) after the return.
        self.cursors: Dict[PooledConnection, Any] = {}
        # Model of the idle deque, right end = next lent.
        self.idle: List[Idle] = []
        self.expect: Dict[str, int] = dict.fromkeys(MODELLED, 0)
        self.closed = False
        self.ever_connected = False
        self.suspect_since = -math.inf
        self.generation = 0
        # Connections a fork left to the parent: open on the server, forgotten by the pool.
        self.abandoned: List[FakeConnection] = []

    @initialize(
        maxsize=st.integers(1, 4),
        autocommit=st.booleans(),
        window=st.sampled_from([1e6, 0.0, 0.5, 1e6]),
        lifetime=st.sampled_from([LIFETIME, 0.0, LIFETIME]),
    )
    def setup(self, maxsize: int, autocommit: bool, window: float, lifetime: float) -> None:
        self.maxsize = maxsize
        self.autocommit = autocommit
        self.window = window
        self.lifetime = lifetime
        # size=0, no keep-alive, no idle limit: the maintenance thread has
        # nothing to do, so every change is the machine's own doing.
        self.pool = ConnectionPool(
            maxsize=maxsize,
            size=0,
            autocommit=autocommit,
            validation_interval=window,
            con_lifetime=lifetime,
            keepalive_interval=0,
            max_idle=0,
            timeout=0,
            name="machine",
            connection_factory=self.server,
        )
        self.other = ConnectionPool(maxsize=1, name="other", connection_factory=self.other_server)
        for pool in (self.pool, self.other):
            pool._use_clock(self.clock)  # nothing was opened yet: pre_create_num=0
        # Maintenance rounds read the pool's clock too (the core's), and the
        # machine moves it past lifetimes: a round running beside a step would
        # retire what the model still holds idle. The machine's pools run none.
        for pool in (self.pool, self.other):
            pool._ensure_maintenance = lambda: None  # type: ignore[method-assign]

    def teardown(self) -> None:
        try:
            for lent in self.borrowed:
                lent.proxy.close()
            self.borrowed.clear()
            for pool in (self.pool, self.other):
                if pool is not None:
                    pool.close()
            if self.pool is not None:
                assert {id(f) for f in self.server.live_snapshot()} == {id(f) for f in self.abandoned}
        finally:
            for fake in self.abandoned:
                self.server.dispose(fake)

    # -- helpers ---------------------------------------------------------------

    @property
    def p(self) -> ConnectionPool:
        assert self.pool is not None
        return self.pool

    def _expired(self, created: float) -> bool:
        if not self.lifetime:
            return False
        age = self.clock.now - created
        assert not 0.95 * self.lifetime <= age < self.lifetime, "age inside the jitter band: fix TICKS"
        return age >= self.lifetime

    def _suspect(self) -> None:
        self.suspect_since = max(self.suspect_since, self.clock.now)

    def _current(self) -> List[Lent]:
        return [lent for lent in self.borrowed if lent.generation == self.generation]

    # -- borrowing ---------------------------------------------------------------

    def _predict_borrow(self, force_ping: bool, fail_connect: bool) -> Tuple[Optional[Idle], Any, int]:
        """Walk the model's idle list as the pool walks its own: returns the
        entry to be lent (None: a new connection), the expected error and how
        many validation pings the borrow sends."""
        now = self.clock.now
        rejected = 0
        pings = 0
        if self.closed:
            self.expect["borrow_errors"] += 1
            return None, (PoolClosed,), pings
        while self.idle:
            entry = self.idle.pop()
            if self._expired(entry.created):
                self.expect["closed_lifetime"] += 1
                continue
            must_ping = force_ping or now - entry.last_used > self.window or entry.last_used < self.suspect_since
            pings += must_ping
            if must_ping and (entry.fake.server_gone or entry.fake.ping_fails):
                self.expect["closed_failed_check"] += 1
                self._suspect()
                rejected += 1
                if rejected == 3:  # several dead in a row: the rest of the suspects go unpinged
                    doomed = [e for e in self.idle if e.last_used < self.suspect_since]
                    self.expect["closed_failed_check"] += len(doomed)
                    self.idle = [e for e in self.idle if e.last_used >= self.suspect_since]
                continue
            self.expect["borrows"] += 1
            return entry, None, pings
        if len(self._current()) < self.maxsize:
            if fail_connect:
                self.expect["connect_errors"] += 1
                # Never connected: the driver's error is final (a borrow error);
                # else retried until the deadline (a borrow timeout).
                self.expect["borrow_timeouts" if self.ever_connected else "borrow_errors"] += 1
                return None, (PoolTimeout,) if self.ever_connected else (FakeConnectError,), pings
            self.expect["connections_made"] += 1
            self.expect["borrows"] += 1
            self.ever_connected = True
            return None, None, pings
        self.expect["borrows_waited"] += 1
        self.expect["borrow_timeouts"] += 1
        return None, (PoolTimeout,), pings

    @precondition(lambda self: self.pool is not None)
    @rule(
        method=st.sampled_from(BORROWS),
        fail_connect=st.sampled_from([False, False, False, True]),
        pause=st.sampled_from([0.0, *TICKS]),
    )
    def borrow(self, method: str, fail_connect: bool, pause: float = 0.0) -> None:
        self.clock.now += pause  # time passes between steps, so connections age
        self.server.fail_next = 1 if fail_connect else 0
        expected, error, pings = self._predict_borrow(method == "pre_ping", fail_connect)
        made_before = len(self.server.made)
        pings_before = self.server.total_pings
        try:
            if method == "get_conn":
                proxy = self.p.get_conn()  # the inlined common case (the pool's timeout is 0)
            elif method == "connection":
                proxy = self.p.connection()
            elif method == "get_conn_timeout":
                proxy = self.p.get_conn(timeout=0)
            elif method == "connection_timeout":
                proxy = self.p.connection(timeout=0)
            else:
                proxy = self.p.get_connection(retry_num=0, pre_ping=method == "pre_ping")
        except Exception as exc:
            assert error is not None, f"unexpected {exc!r}"
            assert isinstance(exc, error), f"expected {error}, got {exc!r}"
            assert len(self.server.made) == made_before
            assert self.server.total_pings == pings_before + pings
            return
        finally:
            self.server.fail_next = 0
        assert error is None, f"expected {error}, the borrow succeeded"
        assert self.server.total_pings == pings_before + pings, "validation pings differ from the model's"
        raw = proxy.raw
        if expected is None:
            assert len(self.server.made) == made_before + 1
            assert raw is self.server.made[-1]
            created = self.clock.now
        else:
            assert raw is expected.fake, f"lent {raw}, the model expected {expected.fake}"
            created = expected.created
        assert all(raw is not lent.fake for lent in self.borrowed), "a connection was lent twice"
        assert not proxy.returned
        self.borrowed.append(Lent(proxy, raw, self.clock.now, created, self.generation))
        self.cursors[proxy] = proxy.cursor()

    # -- returning ----------------------------------------------------------------

    def _predict_return(self, lent: Lent, failed: bool) -> str:
        """What giving ``lent`` back does; updates the model. Returns "idle",
        "closed" or "abandoned"."""
        fake = lent.fake
        now = self.clock.now
        self.expect["returns"] += 1
        self.expect["uses"] += 1
        if lent.generation != self.generation:
            return "abandoned"  # lent before a fork: the socket is the parent's
        status = fake.server_status
        in_trans = bool(status & IN_TRANS)
        ac_bit = bool(status & AUTOCOMMIT)
        dirty = fake._sock is None or in_trans or ac_bit != self.autocommit or not self.autocommit
        hung_up = fake.server_gone  # the probe reads the server's EOF
        probed = now - lent.borrowed_at > self.window
        expired = self._expired(lent.created)
        if not failed and not dirty and not (probed and hung_up) and not expired and not self.closed:
            self.idle.append(Idle(fake, now, lent.created))
            return "idle"
        if fake._sock is None or hung_up:
            self.expect["closed_broken"] += 1
            self._suspect()
            return "closed"
        if self.closed:
            self.expect["closed_on_pool_close"] += 1
            return "closed"
        if expired:
            self.expect["closed_lifetime"] += 1
            return "closed"
        self.expect["rollbacks_on_return"] += in_trans or not ac_bit
        self.idle.append(Idle(fake, now, lent.created))
        return "idle"

    def _dirty(self, lent: Lent, dirt: str) -> None:
        proxy = lent.proxy
        try:
            if dirt == "begin":
                proxy.begin()
            elif dirt == "autocommit_flip":
                proxy.autocommit(not self.autocommit)
            elif dirt == "query":
                proxy.cursor().execute("UPDATE t SET x = 1")
            elif dirt == "begin_commit":
                proxy.begin()
                proxy.commit()
        except pymysql.err.MySQLError:
            # only a dead or forgotten connection refuses a command
            assert lent.fake.server_gone or lent.generation != self.generation

    def _give_back(self, lent: Lent, how: str) -> None:
        proxy = lent.proxy
        if how == "release":
            self.p.release(proxy)
        elif how == "close":
            proxy.close()
        elif how == "with":
            with proxy:
                pass
        else:
            with pytest.raises(Boom), proxy:
                raise Boom

    def _check_returned(self, lent: Lent, outcome: str, status: int, rollbacks: int) -> None:
        fake = lent.fake
        assert lent.proxy.returned
        self.returned.append(lent.proxy)
        if outcome == "closed":
            assert fake.disposed
        elif outcome == "abandoned":
            # forgotten, nothing sent (it may have been closed before the fork by a failed ping(reconnect=True))
            assert fake._sock is None and (fake.disposed or fake in self.abandoned)
        else:
            assert not fake.disposed
            assert not fake.in_trans
            assert fake.get_autocommit() == self.autocommit
            if status & IN_TRANS or not status & AUTOCOMMIT:
                assert fake.rollbacks == rollbacks + 1

    @precondition(lambda self: self.borrowed)
    @rule(
        data=st.data(),
        how=st.sampled_from(["release", "close", "with", "with_error"]),
        dirt=st.sampled_from(["clean", "begin", "autocommit_flip", "query", "begin_commit"]),
        pause=st.sampled_from([0.0, *TICKS]),
    )
    def give_back(self, data: st.DataObject, how: str, dirt: str, pause: float = 0.0) -> None:
        self.clock.now += pause
        index = data.draw(st.integers(0, len(self.borrowed) - 1), label="which")
        lent = self.borrowed.pop(index)
        self._dirty(lent, dirt)
        status, rollbacks = lent.fake.server_status, lent.fake.rollbacks
        outcome = self._predict_return(lent, how == "with_error")
        self._give_back(lent, how)
        self._check_returned(lent, outcome, status, rollbacks)

    @precondition(lambda self: self.pool is not None and not self.closed and self._current())
    @rule(
        data=st.data(),
        how=st.sampled_from(["release", "with", "with_error"]),
        dirt=st.sampled_from(["clean", "begin"]),
    )
    def waiter_served_by_return(self, data: st.DataObject, how: str, dirt: str) -> None:
        """Fill the pool, make another thread wait, and serve it by a return:
        the waiter gets that very connection, or a new one if it was closed."""
        while len(self._current()) < self.maxsize:  # fill up: the waiter must queue
            self.borrow("get_conn_timeout", False)
        current = self._current()
        lent = current[data.draw(st.integers(0, len(current) - 1), label="which")]
        self.borrowed.remove(lent)
        got: List[Any] = []
        waiter = threading.Thread(target=lambda: got.append(self._borrow_waiting()), daemon=True)
        waiter.start()
        deadline = time.monotonic() + WAIT_LIMIT
        while self.p.get_stats()["waiting"] != 1:
            assert time.monotonic() < deadline, "the waiter never queued"
            time.sleep(0.001)
        self._dirty(lent, dirt)
        status, rollbacks = lent.fake.server_status, lent.fake.rollbacks
        outcome = self._predict_return(lent, how == "with_error")
        self.expect["borrows_waited"] += 1
        self.expect["borrows"] += 1
        made_before = len(self.server.made)
        if outcome == "idle":
            served = self.idle.pop()
            expected, created = served.fake, served.created
        else:
            self.expect["connections_made"] += 1
            expected, created = None, self.clock.now
        self._give_back(lent, how)
        waiter.join(WAIT_LIMIT)
        assert not waiter.is_alive(), "the waiter was not served"
        self._check_returned(lent, outcome, status, rollbacks)
        (proxy,) = got
        assert isinstance(proxy, PooledConnection), proxy
        if expected is None:
            assert len(self.server.made) == made_before + 1 and proxy.raw is self.server.made[-1]
        else:
            assert proxy.raw is expected
        self.borrowed.append(Lent(proxy, proxy.raw, self.clock.now, created, self.generation))
        self.cursors[proxy] = proxy.cursor()

    def _borrow_waiting(self) -> Any:
        try:
            return self.p.get_conn(timeout=WAIT_LIMIT)
        except Exception as exc:
            return exc

    # -- time and processes ---------------------------------------------------------

    @rule(step=st.sampled_from(TICKS))
    def tick(self, step: float) -> None:
        self.clock.now += step

    @precondition(lambda self: self.idle and self.lifetime)
    @rule(method=st.sampled_from(BORROWS))
    def borrow_after_lifetime(self, method: str) -> None:
        """Idle connections outlive their lifetime: the next borrow must not get one."""
        self.borrow(method, False, pause=2 * LIFETIME)

    @precondition(lambda self: self.pool is not None)
    @rule(data=st.data(), count=st.integers(2, 4))
    def borrow_burst(self, data: st.DataObject, count: int) -> None:
        """Several borrows in a row, so that several connections get made, age and die together."""
        for _ in range(count):
            self.borrow(data.draw(st.sampled_from(BORROWS), label="method"), False)

    @precondition(lambda self: self.borrowed)
    @rule(data=st.data(), dirt=st.sampled_from(["clean", "begin"]))
    def return_all(self, data: st.DataObject, dirt: str) -> None:
        while self.borrowed:
            self.give_back(data, data.draw(st.sampled_from(["release", "close", "with", "with_error"])), dirt)

    @precondition(lambda self: self.idle or self.borrowed)
    @rule(noticed=st.booleans())
    def server_restarts(self, noticed: bool) -> None:
        """Every session is dropped at once (a server restart); borrowers may
        have noticed already."""
        for entry in self.idle:
            entry.fake.break_(noticed=False)
        for lent in self.borrowed:
            if not lent.fake.server_gone:
                lent.fake.break_(noticed=noticed)

    @precondition(lambda self: self.idle and self._current() and not self.closed)
    @rule(data=st.data(), method=st.sampled_from(BORROWS))
    def restart_noticed_by_a_borrower(self, data: st.DataObject, method: str) -> None:
        """A borrower finds its connection dead after a restart and gives it
        back: every idle connection is now suspect, and the next borrow must
        check the one it takes however recently it was used."""
        self.clock.now += TICKS[0]
        self.server_restarts(True)
        lent = data.draw(st.sampled_from(self._current()), label="which")
        lent.fake.break_(noticed=True)  # this borrower noticed (even if dropped unnoticed before)
        self.borrowed.remove(lent)
        outcome = self._predict_return(lent, False)
        assert outcome == "closed"
        self._give_back(lent, "release")
        self._check_returned(lent, outcome, 0, 0)
        self.borrow(method, False)

    @precondition(lambda self: self.pool is not None)
    @rule()
    def fork(self) -> None:
        """The pool's after-fork step in the child: every inherited connection
        is forgotten unsent-to (the parent still uses it), nothing counted."""
        # (A borrower may hold one the pool already closed: a failed ping(reconnect=True).)
        inherited = [entry.fake for entry in self.idle]
        inherited += [lent.fake for lent in self._current() if not lent.fake.disposed]
        self.idle.clear()
        self.generation += 1
        self.p._after_fork_in_child()
        for fake in inherited:
            assert fake._sock is None and not fake.disposed and fake.closes == 0 and fake.force_closes == 0
        self.abandoned += inherited

    @precondition(lambda self: self.borrowed)
    @rule(data=st.data(), noticed=st.booleans())
    def server_drops_borrowed(self, data: st.DataObject, noticed: bool) -> None:
        """The server drops a borrowed connection; the borrower may not notice."""
        index = data.draw(st.integers(0, len(self.borrowed) - 1), label="which")
        self.borrowed[index].fake.break_(noticed=noticed)

    @precondition(lambda self: self._current())
    @rule(data=st.data(), fail_connect=st.sampled_from([False, False, True]))
    def ping_with_reconnect(self, data: st.DataObject, fail_connect: bool) -> None:
        """0.5.0's ``conn.ping()``: a dead connection is replaced in place."""
        lent = data.draw(st.sampled_from(self._current()), label="which")
        proxy, fake = lent.proxy, lent.fake
        dead = fake._sock is None or fake.server_gone
        self.server.fail_next = 1 if fail_connect else 0
        try:
            proxy.ping()
        except FakeConnectError:
            assert dead and fail_connect
            self.expect["connect_errors"] += 1
            assert fake.disposed and proxy.raw is fake  # left holding the dead one
            return
        finally:
            self.server.fail_next = 0
        if dead:
            self.expect["connections_made"] += 1
            self.expect["closed_broken"] += 1  # the dead session it replaced
            self.ever_connected = True
            assert fake.disposed
            assert proxy.raw is self.server.made[-1]
            lent.fake, lent.created = proxy.raw, self.clock.now
        else:
            assert proxy.raw is fake

    @precondition(lambda self: self.idle)
    @rule(data=st.data())
    def server_drops_idle(self, data: st.DataObject) -> None:
        """The server kills an idle session (wait_timeout, restart): the pool cannot know yet."""
        entry = data.draw(st.sampled_from(self.idle), label="which")
        entry.fake.break_(noticed=False)

    # -- misuse -------------------------------------------------------------------

    @precondition(lambda self: self.returned)
    @rule(data=st.data(), how=st.sampled_from(["release", "close"]))
    def double_return(self, data: st.DataObject, how: str) -> None:
        proxy = data.draw(st.sampled_from(self.returned), label="which")
        before = self.p.get_stats()
        with pytest.raises(ReturnConnectionToPoolError):
            if how == "release":
                self.p.release(proxy)
            else:
                proxy.close()
        after = self.p.get_stats()
        assert _without_times(after) == _without_times(before)

    @precondition(lambda self: self.returned)
    @rule(
        data=st.data(),
        op=st.sampled_from(
            [
                "raw",
                "cursor",
                "commit",
                "rollback",
                "begin",
                "ping",
                "ping_no_reconnect",
                "autocommit",
                "get_autocommit",
                "select_db",
                "forwarded_attr",
                "stale_cursor",
            ]
        ),
    )
    def use_after_return(self, data: st.DataObject, op: str) -> None:
        proxy = data.draw(st.sampled_from(self.returned), label="which")
        commands = sum(f.queries + f.pings + f.begins + f.commits + f.rollbacks for f in self.server.made)
        calls = {
            "raw": lambda: proxy.raw,
            "cursor": lambda: proxy.cursor(),
            "commit": lambda: proxy.commit(),
            "rollback": lambda: proxy.rollback(),
            "begin": lambda: proxy.begin(),
            "ping": lambda: proxy.ping(),
            "ping_no_reconnect": lambda: proxy.ping(reconnect=False),
            "autocommit": lambda: proxy.autocommit(True),
            "get_autocommit": lambda: proxy.get_autocommit(),
            "select_db": lambda: proxy.select_db("test"),
            "forwarded_attr": lambda: proxy.server_status,
            # A cursor kept from the borrow must not reach the next borrower's session.
            "stale_cursor": lambda: self.cursors[proxy].execute("DELETE FROM t"),
        }
        with pytest.raises(ConnectionReturnedError):
            calls[op]()
        assert sum(f.queries + f.pings + f.begins + f.commits + f.rollbacks for f in self.server.made) == commands

    @precondition(lambda self: self.borrowed and self.other is not None)
    @rule(data=st.data())
    def return_to_other_pool(self, data: st.DataObject) -> None:
        assert self.other is not None
        lent = data.draw(st.sampled_from(self.borrowed), label="which")
        proxy, fake = lent.proxy, lent.fake
        mine, theirs = self.p.get_stats(), self.other.get_stats()
        with pytest.raises(ReturnConnectionToPoolError):
            self.other.release(proxy)
        assert not proxy.returned and proxy.raw is fake
        assert _without_times(self.p.get_stats()) == _without_times(mine)
        assert _without_times(self.other.get_stats()) == _without_times(theirs)

    @precondition(lambda self: self.other is not None and not self.closed)
    @rule()
    def foreign_connection_returned_here(self) -> None:
        assert self.other is not None
        foreign = self.other.get_conn(timeout=0)
        before = self.p.get_stats()
        with pytest.raises(ReturnConnectionToPoolError):
            self.p.release(foreign)
        with pytest.raises(ReturnConnectionToPoolError):
            self.p.release(foreign.raw)  # not even a proxy
        assert _without_times(self.p.get_stats()) == _without_times(before)
        self.other.release(foreign)

    # -- closing ------------------------------------------------------------------

    @precondition(lambda self: self.pool is not None)
    @rule(dice=st.integers(0, 5))
    def close_pool(self, dice: int) -> None:
        if dice:  # close seldom, or little else would be explored
            return
        if not self.closed:
            self.expect["closed_on_pool_close"] += len(self.idle)
            for entry in self.idle:
                assert not entry.fake.disposed
            self.idle.clear()
            self.closed = True
        self.p.close()
        assert self.p.closed

    # -- invariants -----------------------------------------------------------------

    @invariant()
    def pool_matches_model(self) -> None:
        if self.pool is None:
            return
        pool = self.pool
        pool._books.check_invariants(lending=not pool.closed)
        current = self._current()
        total = pool.total_num
        assert pool.available_num + len(current) == total
        assert total <= self.maxsize
        assert pool.available_num == len(self.idle)
        stats = pool.get_stats()
        assert stats["open"] == total
        assert stats["idle"] == pool.available_num
        assert stats["borrowed"] == len(current)
        assert stats["connecting"] == 0
        assert stats["waiting"] == 0
        assert stats["pool_max"] == self.maxsize
        assert {k: stats[k] for k in MODELLED} == self.expect
        # The server's view: idle ones, lent ones (a failed ping(reconnect=True)
        # leaves a borrower holding one the pool already closed) and those a fork
        # left to the parent.
        expected_live = {id(e.fake) for e in self.idle} | {id(f) for f in self.abandoned}
        expected_live |= {id(lent.fake) for lent in current if not lent.fake.disposed}
        assert {id(f) for f in self.server.live_snapshot()} == expected_live
        assert self.server.high_water <= self.maxsize + len(self.abandoned)
        for entry in self.idle:
            fake = entry.fake
            assert not fake.in_trans, f"{fake} sits idle inside a transaction"
            assert fake.get_autocommit() == self.autocommit, f"{fake} sits idle with autocommit flipped"
            assert fake._sock is not None
        if self.closed:
            assert total == len(current)


def _without_times(stats: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in stats.items() if not k.endswith("_ms")}


PoolMachine.TestCase.settings = SETTINGS
TestPoolMachine = PoolMachine.TestCase


# -- get_conn()'s inlined common case, step by step ------------------------------------
# The machine reaches these states by chance; these fix them, on both paths.


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()  # each test gives it to its pool (_use_clock)


def _borrow(pool: ConnectionPool, inlined: bool) -> PooledConnection:
    return pool.get_conn() if inlined else pool.get_conn(timeout=0)


@pytest.mark.parametrize("inlined", [True, False], ids=["no-timeout", "timeout"])
def test_borrow_never_lends_an_expired_connection(clock: FakeClock, inlined: bool) -> None:
    server = FakeServer()
    with ConnectionPool(
        maxsize=2, size=0, con_lifetime=LIFETIME, validation_interval=1e6, timeout=0, connection_factory=server
    ) as pool:
        pool._use_clock(clock)
        first = pool.get_conn()
        old = first.raw
        first.close()
        clock.now += 2 * LIFETIME  # well past the lifetime, well inside the validation window
        conn = _borrow(pool, inlined)
        assert conn.raw is not old and old.disposed
        # Retired by this borrow, or by a maintenance round that reads the same
        # clock and may still be unbooking it.
        assert wait_until(lambda: pool.get_stats()["closed_lifetime"] == 1)
        conn.close()


@pytest.mark.parametrize("inlined", [True, False], ids=["no-timeout", "timeout"])
def test_borrow_checks_a_suspect_connection_however_recently_used(clock: FakeClock, inlined: bool) -> None:
    server = FakeServer()
    with ConnectionPool(maxsize=2, size=0, validation_interval=1e6, timeout=0, connection_factory=server) as pool:
        pool._use_clock(clock)
        a, b = pool.get_conn(), pool.get_conn()
        idle = a.raw
        a.close()
        clock.now += 0.001
        idle.break_(noticed=False)  # a restart: the idle one is dead too, the pool cannot know yet
        b.raw.break_(noticed=True)
        b.close()  # returned broken: every connection last used before now is suspect
        assert pool.get_stats()["closed_broken"] == 1
        conn = _borrow(pool, inlined)
        assert conn.raw is not idle, "a suspect connection was lent without a check"
        assert idle.pings == 1 and idle.disposed
        conn.close()
