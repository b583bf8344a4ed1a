"""Model-based test: random sequences of borrows, returns, breakage and misuse
against a model of what the pool must do, with its invariants checked after
every step.

Single-threaded and every borrow uses ``timeout=0``, so each step's outcome is
fully determined; the model predicts it from the fake connections' state.
"""

from __future__ import annotations

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


class PoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.server = FakeServer()
        self.other_server = FakeServer()
        self.pool: Optional[ConnectionPool] = None
        self.other: Optional[ConnectionPool] = None
        self.maxsize = 0
        self.autocommit = True
        self.window = 0.0
        self.borrowed: List[Tuple[PooledConnection, FakeConnection]] = []
        self.returned: List[PooledConnection] = []
        # A cursor made at borrow time, to be used (wrongly) after the return.
        self.cursors: Dict[PooledConnection, Any] = {}
        # Model of the idle deque, right end = next lent; [fake, must_ping].
        self.idle: List[List[Any]] = []
        self.expect: Dict[str, int] = dict.fromkeys(MODELLED, 0)
        self.closed = False
        self.ever_connected = False

    @initialize(
        maxsize=st.integers(1, 4),
        autocommit=st.booleans(),
        window=st.sampled_from([0.0, 1e6]),
    )
    def setup(self, maxsize: int, autocommit: bool, window: float) -> None:
        self.maxsize = maxsize
        self.autocommit = autocommit
        self.window = window
        self.pool = ConnectionPool(
            maxsize=maxsize,
            autocommit=autocommit,
            validation_interval=window,
            name="machine",
            connection_factory=self.server,
        )
        self.other = ConnectionPool(maxsize=1, name="other", connection_factory=self.other_server)

    def teardown(self) -> None:
        for proxy, _ in self.borrowed:
            proxy.close()
        self.borrowed.clear()
        for pool in (self.pool, self.other):
            if pool is not None:
                pool.close()
        if self.pool is not None:
            assert self.server.open_count == 0

    # -- helpers ---------------------------------------------------------------

    @property
    def p(self) -> ConnectionPool:
        assert self.pool is not None
        return self.pool

    def _suspect_all_idle(self) -> None:
        for entry in self.idle:
            entry[1] = True

    def _stats(self) -> Dict[str, Any]:
        stats = self.p.get_stats()
        return {k: stats[k] for k in MODELLED}

    # -- borrowing ---------------------------------------------------------------

    @precondition(lambda self: self.pool is not None)
    @rule(
        method=st.sampled_from(["get_conn", "connection", "get_connection", "pre_ping"]),
        fail_connect=st.sampled_from([False, False, False, True]),
    )
    def borrow(self, method: str, fail_connect: bool) -> None:
        self.server.fail_next = 1 if fail_connect else 0
        expected: Optional[FakeConnection] = None
        error: Optional[Tuple[type, ...]] = None
        if self.closed:
            error = (PoolClosed,)
            self.expect["borrow_errors"] += 1
        else:
            while self.idle:
                fake, must_ping = self.idle.pop()
                pinged = must_ping or self.window == 0 or method == "pre_ping"
                if pinged and (fake.server_gone or fake.ping_fails):
                    self.expect["closed_failed_check"] += 1
                    self._suspect_all_idle()
                    continue
                expected = fake
                self.expect["borrows"] += 1
                break
            else:
                if len(self.borrowed) < self.maxsize:
                    if fail_connect:
                        self.expect["connect_errors"] += 1
                        # Never connected: the driver's error is final (a borrow error);
                        # else retried until the deadline (a borrow timeout).
                        self.expect["borrow_timeouts" if self.ever_connected else "borrow_errors"] += 1
                        error = (PoolTimeout,) if self.ever_connected else (FakeConnectError,)
                    else:
                        self.expect["connections_made"] += 1
                        self.expect["borrows"] += 1
                        self.ever_connected = True
                else:
                    error = (PoolTimeout,)
                    self.expect["borrows_waited"] += 1
                    self.expect["borrow_timeouts"] += 1
        made_before = len(self.server.made)
        try:
            if method == "get_conn":
                proxy = self.p.get_conn(timeout=0)
            elif method == "connection":
                proxy = self.p.connection(timeout=0)
            else:
                proxy = self.p.get_connection(retry_num=0, pre_ping=method == "pre_ping")
        except Exception as exc:
            assert error is not None, f"unexpected {exc!r}"
            assert isinstance(exc, error), f"expected {error}, got {exc!r}"
            assert len(self.server.made) == made_before
            return
        finally:
            self.server.fail_next = 0
        assert error is None, f"expected {error}, the borrow succeeded"
        raw = proxy.raw
        if expected is None:
            assert len(self.server.made) == made_before + 1
            assert raw is self.server.made[-1]
        else:
            assert raw is expected
        assert all(raw is not f for _, f in self.borrowed), "a connection was lent twice"
        assert not proxy.returned
        self.borrowed.append((proxy, raw))
        self.cursors[proxy] = proxy.cursor()

    # -- returning ----------------------------------------------------------------

    @precondition(lambda self: self.borrowed)
    @rule(
        data=st.data(),
        how=st.sampled_from(["release", "close", "with", "with_error"]),
        dirt=st.sampled_from(["clean", "begin", "autocommit_flip", "query", "begin_commit"]),
    )
    def give_back(self, data: st.DataObject, how: str, dirt: str) -> None:
        index = data.draw(st.integers(0, len(self.borrowed) - 1), label="which")
        proxy, fake = self.borrowed.pop(index)
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
            assert fake.server_gone  # only a dead connection refuses a command
        failed = how == "with_error"
        status = fake.server_status
        rollbacks = fake.rollbacks
        # Predict what the return does.
        self.expect["returns"] += 1
        self.expect["uses"] += 1
        if fake._sock is None:
            self.expect["closed_broken"] += 1
            self._suspect_all_idle()
            outcome = "closed"
        elif self.closed:
            self.expect["closed_on_pool_close"] += 1
            outcome = "closed"
        else:
            in_trans = bool(status & IN_TRANS)
            ac_bit = bool(status & AUTOCOMMIT)
            dirty = in_trans or ac_bit != self.autocommit or not self.autocommit
            if not dirty and not failed:
                outcome = "idle"
            else:
                needs_rollback = in_trans or not ac_bit
                talks = needs_rollback or ac_bit != self.autocommit
                if talks and fake.server_gone:
                    self.expect["closed_broken"] += 1
                    outcome = "closed"
                else:
                    self.expect["rollbacks_on_return"] += needs_rollback
                    outcome = "idle"
        if outcome == "idle":
            self.idle.append([fake, False])

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

        assert proxy.returned
        self.returned.append(proxy)
        if outcome == "closed":
            assert fake.disposed
        else:
            assert not fake.disposed
            assert not fake.in_trans
            assert fake.get_autocommit() == self.autocommit
            if status & IN_TRANS or not status & AUTOCOMMIT:
                assert fake.rollbacks == rollbacks + 1

    @precondition(lambda self: self.borrowed)
    @rule(data=st.data(), noticed=st.booleans())
    def server_drops_borrowed(self, data: st.DataObject, noticed: bool) -> None:
        """The server drops a borrowed connection; the borrower may not notice."""
        index = data.draw(st.integers(0, len(self.borrowed) - 1), label="which")
        self.borrowed[index][1].break_(noticed=noticed)

    @precondition(lambda self: self.borrowed)
    @rule(data=st.data(), fail_connect=st.sampled_from([False, False, True]))
    def ping_with_reconnect(self, data: st.DataObject, fail_connect: bool) -> None:
        """0.5.0's ``conn.ping()``: a dead connection is replaced in place."""
        index = data.draw(st.integers(0, len(self.borrowed) - 1), label="which")
        proxy, fake = self.borrowed[index]
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
            self.borrowed[index] = (proxy, proxy.raw)
        else:
            assert proxy.raw is fake

    @precondition(lambda self: self.idle)
    @rule(data=st.data())
    def server_drops_idle(self, data: st.DataObject) -> None:
        """The server kills an idle session (wait_timeout, restart): the pool cannot know yet."""
        entry = data.draw(st.sampled_from(self.idle), label="which")
        entry[0].break_(noticed=False)

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
        proxy, fake = data.draw(st.sampled_from(self.borrowed), label="which")
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
            for fake, _ in self.idle:
                assert not fake.disposed
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
        total = pool.total_num
        assert pool.available_num + len(self.borrowed) == total
        assert total <= self.maxsize
        assert self.server.high_water <= self.maxsize
        # A borrowed slot may hold a connection the pool already closed (a failed
        # ping(reconnect=True)): it still counts until given back.
        dead_lent = sum(1 for _, f in self.borrowed if f.disposed)
        assert self.server.open_count == total - dead_lent
        assert pool.available_num == len(self.idle)
        stats = pool.get_stats()
        assert stats["open"] == total
        assert stats["idle"] == pool.available_num
        assert stats["borrowed"] == len(self.borrowed)
        assert stats["connecting"] == 0
        assert stats["waiting"] == 0
        assert stats["pool_max"] == self.maxsize
        assert {k: stats[k] for k in MODELLED} == self.expect
        lent = {id(f) for _, f in self.borrowed}
        idle_fakes = [f for f in self.server.live_snapshot() if id(f) not in lent]
        assert {id(f) for f in idle_fakes} == {id(f) for f, _ in self.idle}
        for fake in idle_fakes:
            assert not fake.in_trans, f"{fake} sits idle inside a transaction"
            assert fake.get_autocommit() == self.autocommit, f"{fake} sits idle with autocommit flipped"
            assert fake._sock is not None
        if self.closed:
            assert total == len(self.borrowed)
            if not self.borrowed:
                assert self.server.open_count == 0


def _without_times(stats: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in stats.items() if not k.endswith("_ms")}


PoolMachine.TestCase.settings = SETTINGS
TestPoolMachine = PoolMachine.TestCase
