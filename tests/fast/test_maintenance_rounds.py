"""The one maintenance loop (_maintenance.rounds) both shells drive: what it
asks for, how a failed refill backs off, that errors do not end it, and that
it keeps no pool alive across a pause."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from typing import Any, List

import pytest

from pymysqlpool import _maintenance
from pymysqlpool._maintenance import PAUSE, REFILL, ROUND, Schedule, rounds
from support.waiting import wait_until


class FakePool:
    name = "fake"

    def __init__(self, wanted: int = 0) -> None:
        self._closed = False
        self.wanted = wanted
        self.rounds: List[Any] = []

    def _round_plan(self, seen: Any) -> str:
        self.rounds.append(seen)
        return "round-plan"

    def _refill_wanted(self) -> int:
        return self.wanted

    def _maintenance_tick(self) -> float:
        return 0.25


def test_a_round_then_a_refill_of_at_most_eight_at_once_then_a_pause() -> None:
    pool = FakePool(wanted=20)
    schedule = Schedule()
    steps = rounds(weakref.ref(pool), schedule, Exception)
    assert next(steps) == (ROUND, pool, "round-plan")
    assert pool.rounds == [schedule.orphans]
    assert next(steps) == (REFILL, pool, 8)
    assert next(steps) == (PAUSE, None, 0.25)
    pool.wanted = 0
    assert next(steps)[0] == ROUND
    assert next(steps) == (PAUSE, None, 0.25)  # nothing wanted: no refill


def test_a_failed_refill_backs_off_and_a_failed_round_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    pool = FakePool(wanted=1)
    schedule = Schedule()
    steps = rounds(weakref.ref(pool), schedule, Exception)
    next(steps)
    assert next(steps)[0] == REFILL
    assert steps.throw(OSError("refused")) == (PAUSE, None, 0.25)
    assert schedule.backoff > 0 and not schedule.refill_due()
    assert next(steps)[0] == ROUND
    assert next(steps)[0] == PAUSE  # backing off: no refill this round
    assert next(steps)[0] == ROUND
    assert steps.throw(RuntimeError("round broke")) == (PAUSE, None, 0.25)
    assert "maintenance round failed" in caplog.text and "could not open a connection" in caplog.text


def test_an_error_it_must_not_survive_ends_it() -> None:
    pool = FakePool()
    steps = rounds(weakref.ref(pool), Schedule(), Exception)
    next(steps)
    with pytest.raises(KeyboardInterrupt):
        steps.throw(KeyboardInterrupt())
    survivor = rounds(weakref.ref(pool), Schedule(), BaseException)
    next(survivor)
    assert survivor.throw(KeyboardInterrupt()) == (PAUSE, None, 0.25)  # the thread's: logged, goes on


def test_it_ends_when_the_pool_is_closed_or_collected() -> None:
    pool = FakePool()
    steps = rounds(weakref.ref(pool), Schedule(), Exception)
    next(steps)
    assert next(steps)[0] == PAUSE
    collected = weakref.ref(pool)
    del pool
    gc.collect()
    assert collected() is None  # not kept alive by the paused loop
    with pytest.raises(StopIteration):
        next(steps)
    closed = FakePool()
    closed._closed = True
    assert list(rounds(weakref.ref(closed), Schedule(), Exception)) == []


@pytest.mark.parametrize("draw", [0.0, 1.0])
def test_the_refill_back_off_doubles_up_to_its_cap_with_jitter_and_a_success_resets_it(
    monkeypatch: pytest.MonkeyPatch, draw: float
) -> None:
    """0.1, 0.2, 0.4 ... 30 s; each pause drawn between half the back-off and
    all of it (connections refused together do not all retry together)."""
    monkeypatch.setattr(_maintenance.random, "random", lambda: draw)
    schedule = Schedule()
    assert schedule.refill_due()  # nothing failed yet
    backoffs = []
    for _ in range(12):
        before = time.monotonic()
        schedule.refill_failed("fake", OSError("refused"))
        after = time.monotonic()
        pause = schedule.backoff * (0.5 + draw / 2)
        assert before + pause <= schedule.retry_at <= after + pause
        backoffs.append(schedule.backoff)
    assert backoffs == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0, 30.0])
    assert not schedule.refill_due()
    schedule.refill_ok()
    schedule.refill_failed("fake", OSError("refused again"))
    assert schedule.backoff == pytest.approx(0.1)  # counted from the start again


def test_a_refill_that_succeeds_starts_the_back_off_again() -> None:
    pool = FakePool(wanted=1)
    schedule = Schedule()
    steps = rounds(weakref.ref(pool), schedule, Exception)
    next(steps)
    assert next(steps)[0] == REFILL
    steps.throw(OSError("refused"))
    schedule.retry_at = 0.0  # the pause is over
    next(steps)
    assert next(steps)[0] == REFILL
    steps.throw(OSError("refused again"))
    assert schedule.backoff == pytest.approx(0.2)  # failures in a row double it
    schedule.retry_at = 0.0
    next(steps)
    assert next(steps)[0] == REFILL
    assert next(steps)[0] == PAUSE  # this refill worked
    next(steps)
    assert next(steps)[0] == REFILL
    steps.throw(OSError("refused once more"))
    assert schedule.backoff == pytest.approx(0.1)


def test_a_driver_is_told_to_end_once_the_loop_ended() -> None:
    closed = FakePool()
    closed._closed = True
    steps = rounds(weakref.ref(closed), Schedule(), Exception)
    assert _maintenance._advance(steps, None) == (_maintenance.END, None, None)


def test_the_maintenance_thread_is_a_daemon_and_ends_with_its_pool(make_pool: Any) -> None:
    """A daemon: a pool never closed does not keep the interpreter from exiting."""
    pool = make_pool(maxsize=2, pre_create_num=1, pool_name="daemon-check")
    (thread,) = [t for t in threading.enumerate() if t.name == "pymysqlpool-maintenance-daemon-check"]
    assert thread.daemon and thread.is_alive()
    pool.close()
    assert not thread.is_alive()


def test_the_thread_hands_a_failed_refill_back_to_the_loop(make_pool: Any, caplog: pytest.LogCaptureFixture) -> None:
    """The maintenance thread throws a step's error back into the loop: a
    refill that could not connect is logged and backs off."""

    def refuse(**kwargs: Any) -> Any:
        raise OSError("refused by the test")

    pool = make_pool(maxsize=2, pre_create_num=1, open=False, connection_factory=refuse)
    pool.open()
    assert wait_until(lambda: "could not open a connection (refused by the test)" in caplog.text, timeout=10)
    pool.close()


def test_the_asyncio_maintenance_task_reopens_what_was_lost(async_pool_class: Any) -> None:
    """The task driver runs the refill: a connection closed broken is replaced
    in the background, back to pre_create_num."""
    import asyncio

    async def main() -> dict:
        pool = async_pool_class(maxsize=3, pre_create_num=2, host="127.0.0.1")
        async with pool:
            await pool.wait(5)
            conn = await pool.get_conn()
            conn._raw.break_()
            await pool.release(conn)  # closed: nothing to reuse
            for _ in range(500):  # bounded: 5 s
                stats = pool.get_stats()
                if stats["closed_broken"] == 1 and stats["open"] == 2:
                    break
                await asyncio.sleep(0.01)
            return dict(pool.get_stats())

    stats = asyncio.run(main())
    assert stats["closed_broken"] == 1 and stats["open"] == 2 and stats["connections_made"] == 3, stats
