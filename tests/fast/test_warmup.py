"""Warm-up and refill dial several connections at once, never more than MAX_AT_ONCE,
and keep the books exact when a dial fails or the constructor is interrupted."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from pymysqlpool import ConnectionPool, _warmup
from pymysqlpool._signals import Latch
from support.waiting import wait_until

from .fakes import FakeConnectError, FakeServer


class SlowServer:
    """A FakeServer whose connects take ``delay`` seconds; records how many ran at once."""

    def __init__(self, server: FakeServer, delay: float) -> None:
        self.server = server
        self.delay = delay
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.fail_at: set[int] = set()  # 1-based numbers of the connects that fail
        self.interrupt_main_at = 0  # the caller's n-th connect raises KeyboardInterrupt
        self.calls = 0
        self.main_calls = 0

    def __call__(self, **kwargs: Any) -> Any:
        with self.lock:
            self.calls += 1
            number = self.calls
            self.running += 1
            self.peak = max(self.peak, self.running)
            on_main = threading.current_thread() is threading.main_thread()
            self.main_calls += on_main
            interrupt = on_main and self.main_calls == self.interrupt_main_at
        try:
            time.sleep(self.delay)
            if interrupt:
                raise KeyboardInterrupt
            if number in self.fail_at:
                raise FakeConnectError(2003, "Can't connect to MySQL server on 'fake' (refused)")
            return self.server(**kwargs)
        finally:
            with self.lock:
                self.running -= 1


def _warmup_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("pymysqlpool-warmup", "pymysqlpool-refill"))]


def test_prefill_dials_at_most_max_at_once(server: FakeServer, make_pool: Callable[..., ConnectionPool]) -> None:
    slow = SlowServer(server, 0.03)
    pool = make_pool(maxsize=30, pre_create_num=30, connection_factory=slow)
    assert 2 <= slow.peak <= _warmup.MAX_AT_ONCE
    stats = pool.get_stats()
    assert (stats["open"], stats["idle"], stats["connecting"], stats["connections_made"]) == (30, 30, 0, 30)
    assert server.open_count == 30
    assert wait_until(lambda: not _warmup_threads())


def test_prefill_of_one_uses_no_thread(server: FakeServer, make_pool: Callable[..., ConnectionPool]) -> None:
    seen: list[str] = []

    def factory(**kwargs: Any) -> Any:
        seen.append(threading.current_thread().name)
        return server(**kwargs)

    make_pool(maxsize=2, pre_create_num=1, connection_factory=factory)
    assert seen == [threading.current_thread().name]


@pytest.mark.parametrize("failing", [1, 5, 12])
def test_a_failed_prefill_closes_every_connection_and_raises(server: FakeServer, failing: int) -> None:
    slow = SlowServer(server, 0.02)
    slow.fail_at = {failing}
    with pytest.raises(FakeConnectError):
        ConnectionPool(maxsize=12, pre_create_num=12, connection_factory=slow)
    assert wait_until(lambda: not _warmup_threads())
    assert server.open_count == 0
    # After the failure no new dial starts: only those already in flight finish.
    assert slow.calls <= failing + _warmup.MAX_AT_ONCE - 1
    if failing == 1:
        assert slow.calls == 1  # the first dial runs alone: a bad password costs one attempt
    assert all(c.disposed for c in server.made)


def test_an_interrupted_prefill_leaves_no_connection_open(server: FakeServer) -> None:
    slow = SlowServer(server, 0.05)
    slow.interrupt_main_at = 2  # Ctrl-C while helpers are dialing too
    with pytest.raises(KeyboardInterrupt):
        ConnectionPool(maxsize=20, pre_create_num=20, connection_factory=slow)
    # The helpers finish the dial they were in, then close what they opened.
    assert wait_until(lambda: not _warmup_threads())
    assert server.made, "helpers should have opened some connections"
    assert server.open_count == 0


def test_refill_after_a_mass_failure_is_concurrent_bounded_and_exact(
    server: FakeServer, make_pool: Callable[..., ConnectionPool]
) -> None:
    slow = SlowServer(server, 0.02)
    pool = make_pool(maxsize=12, pre_create_num=12, connection_factory=slow)
    conns = [pool.get_conn() for _ in range(12)]
    slow.peak = 0
    slow.fail_at = {slow.calls + 3}  # one refill dial fails: back-off, then the rest
    overshoot: list[Any] = []
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            stats = pool.get_stats()
            if stats["open"] + stats["connecting"] > 12:
                overshoot.append(stats)
            time.sleep(0.001)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        for conn in conns:  # the server restarted: every connection is dead
            conn._raw.break_()
            conn.close()
        assert wait_until(lambda: pool.get_stats()["idle"] == 12, timeout=20), pool.get_stats()
    finally:
        watching.set()
        watcher.join(5)
    stats = pool.get_stats()
    assert (stats["open"], stats["connecting"], stats["connect_errors"], stats["closed_broken"]) == (12, 0, 1, 12)
    assert 2 <= slow.peak <= _warmup.MAX_AT_ONCE
    assert overshoot == []
    assert server.open_count == 12


def test_an_interrupt_while_waiting_for_the_others_stops_them_after_their_step() -> None:
    """The caller's steps are done and it waits for the other threads; a
    KeyboardInterrupt there is raised at once and the others start no new step."""
    release = threading.Event()
    lock = threading.Lock()
    after_interrupt: list[int] = []
    interrupted = threading.Event()
    main = threading.get_ident()
    calls = [0]

    def step() -> bool:
        with lock:
            calls[0] += 1
            if calls[0] > 2000:  # bound: without the rule the workers would step on
                return False
        if threading.get_ident() == main:
            return calls[0] == 1  # the first step alone; then the caller goes to wait
        if interrupted.is_set():
            after_interrupt.append(1)
        release.wait(5)
        return True

    def interrupt() -> None:
        time.sleep(0.3)  # the caller is in join() by now
        signal.pthread_kill(main, signal.SIGINT)
        interrupted.set()
        time.sleep(0.1)
        release.set()

    before = set(threading.enumerate())
    killer = threading.Thread(target=interrupt)
    killer.start()
    with pytest.raises(KeyboardInterrupt):
        _warmup.run(step, 3, "warmup-interrupt-test")
    killer.join(5)
    assert wait_until(lambda: not set(threading.enumerate()) - before, 5)  # the workers ended
    assert len(after_interrupt) <= 2, len(after_interrupt)  # at most the step each was in


# -- _warmup.run's own rules, step by step -----------------------------------------


class Boom(Exception):
    pass


class Interrupt(BaseException):
    """Stands for KeyboardInterrupt without upsetting pytest."""


def _record_events(monkeypatch: pytest.MonkeyPatch) -> list[Latch]:
    """Every flag run makes from now on (its ``stop``)."""
    made: list[Latch] = []

    class Recorded(Latch):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    monkeypatch.setattr(_warmup, "Latch", Recorded)
    return made


def _helpers(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"{name}-")]


def test_run_starts_no_thread_when_the_first_step_finds_nothing_to_do() -> None:
    callers: list[str] = []

    def step() -> bool:
        callers.append(threading.current_thread().name)
        return False

    _warmup.run(step, 8, "unit-warmup-idle")
    assert callers == [threading.current_thread().name]


def test_run_steps_on_exactly_workers_threads_the_helpers_daemons() -> None:
    """Four workers: the caller and three daemon helpers (a helper stuck in a
    connect must not keep the interpreter from exiting), all at once."""
    together = threading.Barrier(4, timeout=10)  # broken (raised) if fewer than four arrive
    lock = threading.Lock()
    seen: dict[str, bool] = {}
    first = [True]

    def step() -> bool:
        me = threading.current_thread()
        with lock:
            if first[0]:
                first[0] = False
                return True  # the first step runs alone
            if me.name in seen:
                return False
            seen[me.name] = me.daemon
        together.wait()
        return True

    _warmup.run(step, 4, "unit-warmup-four")
    caller = threading.current_thread().name
    assert len(seen) == 4 and caller in seen
    assert all(daemon for name, daemon in seen.items() if name != caller)
    assert wait_until(lambda: not _helpers("unit-warmup-four"))


def test_an_error_on_a_helper_stops_the_caller_and_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    events = _record_events(monkeypatch)
    caller = threading.current_thread()
    calls = {"caller": 0}
    caller_in_step = threading.Event()

    def step() -> bool:
        if threading.current_thread() is not caller:
            assert caller_in_step.wait(10)
            raise Boom("the helper's connect failed")
        calls["caller"] += 1
        if calls["caller"] == 1:
            events.clear()  # run's stop is the next Event made
            return True
        if calls["caller"] == 2:
            caller_in_step.set()
            stopped.append(events[0].wait(10))  # not an assert: run would take its error for the step's
            return True
        return False  # a step started after the error

    stopped: list[bool] = []
    with pytest.raises(Boom):
        _warmup.run(step, 2, "unit-warmup-helper-fails")
    assert stopped == [True], "the helper's error did not stop the others"
    assert calls["caller"] == 2


@pytest.mark.parametrize("error", [Boom, Interrupt])
def test_an_error_on_the_caller_stops_the_helpers_and_is_raised(
    monkeypatch: pytest.MonkeyPatch, error: type[BaseException]
) -> None:
    """An Exception is raised once the helpers stopped; an interrupt at once,
    the helpers stopping after the step they are in."""
    events = _record_events(monkeypatch)
    caller = threading.current_thread()
    calls = {"caller": 0, "helper": 0}
    helper_in_step = threading.Event()

    def step() -> bool:
        if threading.current_thread() is caller:
            calls["caller"] += 1
            if calls["caller"] == 1:
                events.clear()
                return True
            assert helper_in_step.wait(10)
            raise error("the caller's connect failed")
        calls["helper"] += 1
        if calls["helper"] == 1:
            helper_in_step.set()
            stopped.append(events[0].wait(10))
            return True
        return False  # a step started after the error

    stopped: list[bool] = []
    with pytest.raises(error):
        _warmup.run(step, 2, "unit-warmup-caller-fails")
    for helper in _helpers("unit-warmup-caller-fails"):
        helper.join(15)
    assert stopped == [True], "the caller's error did not stop the helper"
    assert calls == {"caller": 2, "helper": 1}


# -- the same rules for tasks (_warmup.run_tasks, the asyncio pool's) ----------------


def test_run_tasks_runs_the_first_step_alone_then_workers_tasks_until_each_is_told_no() -> None:
    state = {"calls": 0, "running": 0, "peak": 0}
    first_alone: list[bool] = []

    async def step() -> bool:
        state["calls"] += 1
        number = state["calls"]
        state["running"] += 1
        state["peak"] = max(state["peak"], state["running"])
        for _ in range(3 if number == 1 else 1):
            await asyncio.sleep(0)
            if number == 1:
                first_alone.append(state["running"] == 1)
        state["running"] -= 1
        return number <= 10  # ten steps with something to do

    asyncio.run(_warmup.run_tasks(step, 4))
    assert first_alone == [True, True, True]
    # Ten that opened something, then one "nothing left" for each of the four tasks.
    assert state["calls"] == 14 and state["peak"] == 4, state


@pytest.mark.parametrize("workers", [0, 3])
def test_run_tasks_with_nothing_to_do_steps_once_or_never(workers: int) -> None:
    calls: list[int] = []

    async def step() -> bool:
        calls.append(1)
        return False

    asyncio.run(_warmup.run_tasks(step, workers))
    assert len(calls) == min(workers, 1)


def test_run_tasks_raises_the_first_error_and_starts_no_step_after_it() -> None:
    calls = {"n": 0}

    async def step() -> bool:
        calls["n"] += 1
        number = calls["n"]
        await asyncio.sleep(0)
        if number == 3:
            raise Boom("a connect failed")
        return number < 50

    with pytest.raises(Boom):
        asyncio.run(_warmup.run_tasks(step, 3))
    # The first alone, two more before the error, and at most the other two
    # tasks' steps under way when it came.
    assert calls["n"] <= 5, calls
