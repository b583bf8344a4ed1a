"""Fast tier: the events interface (on_connect/on_checkout/on_checkin/on_close/
on_timeout), use-time stats, reset= and wrong-node detection, on the fake driver."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from pymysqlpool import ConnectionPool, GetConnectionFromPoolError, PoolTimeout

from .fakes import FakeServer


class Recorder:
    """An events object with every method; records (event, args)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.lock = threading.Lock()

    def _note(self, name: str, *args: Any) -> None:
        with self.lock:
            self.calls.append((name, args))

    def on_connect(self, raw: Any, seconds: float) -> None:
        self._note("connect", raw, seconds)

    def on_checkout(self, raw: Any, waited: float) -> None:
        self._note("checkout", raw, waited)

    def on_checkin(self, raw: Any, used: float) -> None:
        self._note("checkin", raw, used)

    def on_close(self, raw: Any, reason: str) -> None:
        self._note("close", raw, reason)

    def on_timeout(self, waited: float) -> None:
        self._note("timeout", waited)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def test_every_event_fires_with_its_arguments(make_pool: Callable[..., ConnectionPool], server: FakeServer) -> None:
    rec = Recorder()
    pool = make_pool(maxsize=1, events=rec, con_lifetime=0)
    conn = pool.get_conn()
    raw = server.made[0]
    assert rec.names() == ["connect", "checkout"]
    assert rec.calls[0][1][0] is raw and rec.calls[0][1][1] >= 0
    assert rec.calls[1][1][0] is raw and rec.calls[1][1][1] >= 0
    pool.release(conn)
    assert rec.names()[-1] == "checkin" and rec.calls[-1][1][0] is raw
    with pytest.raises(PoolTimeout), pool.get_conn():
        pool.get_conn(timeout=0.05)
    assert rec.calls[-2][0] == "timeout" and rec.calls[-2][1][0] >= 0.04
    pool.close()
    assert rec.calls[-1] == ("close", (raw, "closed_on_pool_close"))


def test_methods_are_looked_up_once_when_added(make_pool: Callable[..., ConnectionPool]) -> None:
    lookups: list[str] = []

    class Counting:
        def __getattribute__(self, name: str) -> Any:
            if name.startswith("on_"):
                lookups.append(name)
            return object.__getattribute__(self, name)

        def on_checkout(self, raw: Any, waited: float) -> None:
            pass

    pool = make_pool(maxsize=2)
    pool.add_events(Counting())
    after_add = len(lookups)
    assert after_add > 0
    for _ in range(5):
        pool.release(pool.get_conn())
    assert len(lookups) == after_add


def test_objects_without_a_method_are_skipped_and_remove_restores_the_fast_path(
    make_pool: Callable[..., ConnectionPool],
) -> None:
    closes: list[str] = []

    class OnlyClose:
        def on_close(self, raw: Any, reason: str) -> None:
            closes.append(reason)

    rec = Recorder()
    only = OnlyClose()
    pool = make_pool(maxsize=2, events=[rec, only])
    assert pool._divert and pool._always_reset
    assert pool.remove_events(rec) is True
    assert pool.remove_events(rec) is False
    # Only on_close left: neither borrow nor return leaves the fast path.
    assert not pool._divert and not pool._always_reset
    pool.release(pool.get_conn())
    pool.close()
    assert rec.calls == []  # removed before the first connect
    assert closes == ["closed_on_pool_close"]


def test_an_object_with_no_event_method_is_refused(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=1)
    with pytest.raises(TypeError, match="not an events object"):
        pool.add_events(object())
    with pytest.raises(TypeError, match=r"^events: int has none of the event methods"):  # names the argument
        make_pool(events=1)


def test_checkout_hook_error_closes_the_connection_and_lends_another(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    rejected: list[Any] = []

    class RejectFirst:
        def on_checkout(self, raw: Any, waited: float) -> None:
            if not rejected:
                rejected.append(raw)
                raise RuntimeError("not this one")

    pool = make_pool(maxsize=2, events=RejectFirst())
    conn = pool.get_conn()
    assert conn.raw is not rejected[0]
    assert rejected[0].disposed
    stats = pool.get_stats()
    assert stats["closed_failed_check"] == 1 and stats["borrows"] == 1 and stats["open"] == 1
    pool.release(conn)


class Never:
    def on_checkout(self, raw: Any, waited: float) -> None:
        raise RuntimeError("never")


def test_checkout_hook_that_always_fails_ends_the_borrow_after_three_connections(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    """Not a connect storm until the timeout: the third refusal in one
    borrow raises, the hook's error chained, at once however long the
    borrow could still wait."""
    timeouts: list[float] = []

    class Timeouts:
        def on_timeout(self, waited: float) -> None:
            timeouts.append(waited)

    pool = make_pool(maxsize=2, events=[Never(), Timeouts()])
    with pytest.raises(GetConnectionFromPoolError, match="on_checkout rejected 3 connections in a row") as raised:
        pool.get_conn(timeout=5)
    assert not isinstance(raised.value, PoolTimeout)
    assert isinstance(raised.value.__cause__, RuntimeError) and str(raised.value.__cause__) == "never"
    assert len(server.made) == 3 and server.open_count == 0
    stats = pool.get_stats()
    assert stats["open"] == 0 and stats["borrows"] == 0 and stats["borrow_errors"] == 1
    assert stats["closed_failed_check"] == 3 and stats["borrow_timeouts"] == 0
    assert timeouts == []  # not a timeout


def test_checkout_hook_refusal_within_a_short_timeout_is_a_pool_timeout(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    timeouts: list[float] = []

    class Timeouts:
        def on_timeout(self, waited: float) -> None:
            timeouts.append(waited)

    pool = make_pool(maxsize=2, events=[Never(), Timeouts()])
    with pytest.raises(PoolTimeout, match="on_checkout rejected") as raised:
        pool.get_conn(timeout=0)
    assert isinstance(raised.value.__cause__, ValueError)
    assert isinstance(raised.value.__cause__.__cause__, RuntimeError)  # the hook's own error and traceback
    assert len(server.made) == 1
    stats = pool.get_stats()
    assert stats["open"] == 0 and stats["borrows"] == 0 and stats["borrow_timeouts"] == 1
    assert len(timeouts) == 1


def test_checkin_hook_error_closes_the_connection(make_pool: Callable[..., ConnectionPool], server: FakeServer) -> None:
    class Fails:
        def on_checkin(self, raw: Any, used: float) -> None:
            raise RuntimeError("bad state")

    closes: list[str] = []

    class Closes:
        def on_close(self, raw: Any, reason: str) -> None:
            closes.append(reason)

    pool = make_pool(maxsize=1, events=[Fails(), Closes()])
    pool.release(pool.get_conn())
    assert server.open_count == 0
    assert pool.get_stats()["closed_broken"] == 1
    assert closes == ["closed_broken"]


def test_connect_hook_error_is_a_connect_error(make_pool: Callable[..., ConnectionPool], server: FakeServer) -> None:
    class Fails:
        def on_connect(self, raw: Any, seconds: float) -> None:
            raise RuntimeError("refuse this session")

    pool = make_pool(maxsize=1, events=Fails())
    with pytest.raises(RuntimeError, match="refuse"):
        pool.get_conn(timeout=0.2)
    assert server.open_count == 0
    assert pool.get_stats()["connect_errors"] == 1


def test_connect_hook_interrupted_is_no_connect_error(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    """An interrupt (KeyboardInterrupt, a task cancel) inside on_connect ends
    the borrow and closes the session, but no connect failed."""

    class Interrupt(BaseException):
        pass

    class Interrupted:
        def on_connect(self, raw: Any, seconds: float) -> None:
            raise Interrupt

    pool = make_pool(maxsize=1, events=Interrupted())
    with pytest.raises(Interrupt):
        pool.get_conn(timeout=0.2)
    assert server.open_count == 0
    assert pool.get_stats()["connect_errors"] == 0


def test_close_hook_errors_are_logged_and_ignored(
    make_pool: Callable[..., ConnectionPool], server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    class Fails:
        def on_close(self, raw: Any, reason: str) -> None:
            raise RuntimeError("hook bug")

    pool = make_pool(maxsize=1, events=Fails(), pre_create_num=1)
    with caplog.at_level(logging.ERROR, logger="pymysqlpool"):
        pool.close()
    assert server.open_count == 0
    assert "hook bug" in caplog.text


def test_reset_is_a_checkin_hook_and_its_error_closes(
    make_pool: Callable[..., ConnectionPool], server: FakeServer
) -> None:
    seen: list[Any] = []

    def reset(raw: Any) -> None:
        seen.append(raw)
        if len(seen) == 2:
            raise RuntimeError("cannot reset")

    pool = make_pool(maxsize=1, reset=reset)
    pool.release(pool.get_conn())
    assert seen == [server.made[0]] and server.open_count == 1
    pool.release(pool.get_conn())
    assert server.open_count == 0 and pool.get_stats()["closed_broken"] == 1
    with pytest.raises(TypeError, match="reset must be callable"):
        make_pool(reset="no")


def test_use_time_is_measured_per_return(make_pool: Callable[..., ConnectionPool]) -> None:
    pool = make_pool(maxsize=2)
    for held in (0.25, 0.05):
        conn = pool.get_conn()
        assert conn._slot is not None
        conn._slot.borrowed_at -= held  # as if borrowed that much earlier
        pool.release(conn)
    stats = pool.pop_stats()
    assert stats["uses"] == 2
    assert 300.0 <= stats["use_ms"] < 400.0
    assert 250.0 <= stats["use_max_ms"] < 300.0
    after = pool.get_stats()
    assert after["uses"] == 0 and after["use_ms"] == 0 and after["use_max_ms"] == 0


@pytest.mark.parametrize(
    ("error", "closed"),
    [
        ((1290, "The MariaDB server is running with the --read-only option so it cannot execute this statement"), True),
        ((1047, "WSREP has not yet prepared node for application use"), True),
        ((1290, "The MariaDB server is running with the --secure-file-priv option"), False),
        ((1062, "Duplicate entry"), False),
    ],
)
def test_wrong_node_error_closes_on_return(
    make_pool: Callable[..., ConnectionPool], server: FakeServer, error: tuple[int, str], closed: bool
) -> None:
    reasons: list[str] = []

    class Closes:
        def on_close(self, raw: Any, reason: str) -> None:
            reasons.append(reason)

    pool = make_pool(maxsize=1, events=Closes())
    conn = pool.get_conn()
    fake = server.made[0]
    fake.next_error = error
    with pytest.raises(Exception, match=str(error[0])):
        conn.query("INSERT INTO t VALUES (1)")
    conn.query("SELECT 1")  # a later success does not clear the mark
    pool.release(conn)
    stats = pool.get_stats()
    assert stats["closed_wrong_node"] == (1 if closed else 0)
    assert fake.disposed is closed
    assert reasons == (["closed_wrong_node"] if closed else [])
    # The next borrow gets a working connection either way.
    with pool.connection() as again:
        assert (again.raw is fake) is not closed


@pytest.mark.parametrize("event", ["on_checkout", "on_checkin"])
def test_interrupt_inside_a_hook_leaves_the_pool_consistent(
    make_pool: Callable[..., ConnectionPool], server: FakeServer, event: str
) -> None:
    class Interrupts:
        armed = True

    def hook(raw: Any, seconds: float) -> None:
        if Interrupts.armed:
            Interrupts.armed = False
            raise KeyboardInterrupt

    obj = Interrupts()
    setattr(obj, event, hook)
    pool = make_pool(maxsize=1, events=obj)
    with pytest.raises(KeyboardInterrupt):
        pool.release(pool.get_conn())
    # The interrupted connection was closed, not lent or parked half-done.
    assert server.made[0].disposed
    stats = pool.get_stats()
    assert stats["open"] == 0 and stats["idle"] == 0 and stats["borrowed"] == 0
    with pool.connection() as conn:  # and the pool works on
        assert conn.raw is server.made[1]


def test_on_timeout_fires_for_a_borrow_on_the_direct_path(make_pool: Callable[..., ConnectionPool]) -> None:
    """get_conn() without a timeout takes the core's direct path (no hook
    diverts it): the borrow plan itself fires on_timeout, once."""
    waited: list[float] = []

    class Timeouts:
        def on_timeout(self, seconds: float) -> None:
            waited.append(seconds)

    pool = make_pool(maxsize=1, timeout=0.05, events=Timeouts())
    assert not pool._divert  # on_timeout alone keeps the direct path
    held = pool.get_conn()
    with pytest.raises(PoolTimeout):
        pool.get_conn()
    assert len(waited) == 1 and waited[0] >= 0.04, waited
    pool.release(held)


def test_asyncio_on_timeout_fires_in_the_borrow_plan(async_pool_class: Any) -> None:
    waited: list[float] = []

    class Timeouts:
        def on_timeout(self, seconds: float) -> None:
            waited.append(seconds)

    async def main() -> None:
        async with async_pool_class(maxsize=1, timeout=0.05, events=Timeouts(), host="127.0.0.1") as pool:
            held = await pool.get_conn()
            with pytest.raises(PoolTimeout):
                await pool.get_conn()
            with pytest.raises(PoolTimeout):
                await pool.get_conn(timeout=0.01)
            await pool.release(held)

    asyncio.run(main())
    assert len(waited) == 2 and waited[0] >= 0.04, waited
