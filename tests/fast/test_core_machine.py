"""Model-based test of the sans-I/O core (``_core.PoolCore``) with no shell.

The machine plays the shell itself. It starts the core's plans (borrow,
return, check, drain, resize, a maintenance round, a refill, close) and keeps
several of them suspended at their requests at once -- a borrower waiting, a
borrower dialing, a returner resetting, a round pinging: what concurrency
looks like to the core, whose lock is a no-op here. Each ``advance`` step
answers one suspended request: with success, with an error (a connect
error, a failed ping, a failed reset), by timing a wait out, or by throwing
an interrupt (KeyboardInterrupt), after which the plan must give up what it
holds without yielding again.

The core's books are checked after every step (the lock being a no-op, they
must hold between any two steps): every open slot is idle, lent or held and
counted so; no more than ``maxsize`` open or being opened; no idle slot while
a borrower queues (nor while there is room to dial); ``connections_made`` =
closes + open (a connection just dialed counts once booked or closed); each waiter queued once; every lent
or held slot and every right to dial (``connecting``) held by a borrower or a
suspended plan; a plan talks only on an open connection that no borrower and
no other plan uses; a connection that failed a check or a reset is never kept;
a closed slot never comes back; a closed pool keeps nothing idle. Once every
plan has ended, nothing may be left held or reserved, the counters of borrows
and refusals must match what the machine saw, no slot may be orphaned, and
all ``maxsize`` connections must be borrowable without waiting.

The core's ``_slots`` set is replaced by an insertion-ordered one so that an
example replays identically (a set of slots iterates in address order).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import pymysqlpool._plans as plans
from pymysqlpool._config import KILL_WATCH, build
from pymysqlpool._core import NoLock, PoolCore
from pymysqlpool._plans import CHECK, CLOSE, DIAL, KILL, PING, RESET, SLEEP, WAIT, Plan
from pymysqlpool._slot import GONE, HELD, IDLE, KILLING, NEW, OUT, Slot
from pymysqlpool._waiting import DialToken, Waiter
from pymysqlpool.connection import PROXY_TYPES, lend
from pymysqlpool.errors import PoolClosed, PoolTimeout, ReturnConnectionToPoolError, TooManyRequests

OP_NAMES = {
    DIAL: "DIAL",
    CHECK: "CHECK",
    PING: "PING",
    CLOSE: "CLOSE",
    RESET: "RESET",
    WAIT: "WAIT",
    SLEEP: "SLEEP",
    KILL: "KILL",
}
IO_TIMEOUT = 1000.0  # connect_timeout: the orphan grace (2 * it + 1) is never reached by the clock steps
# A kill: connect_timeout to reach the server, then KILL_WATCH for the KILL and the session's end.
KILL_BOUND = IO_TIMEOUT + KILL_WATCH
LIFETIME = 100.0
MAX_PLANS = 6  # suspended at once

SETTINGS = settings(
    max_examples=100,
    stateful_step_count=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class ConnectError(Exception):
    """A connect that failed the way an unreachable server fails (retryable)."""


class FatalConnectError(Exception):
    """A connect refused for good (wrong password)."""


class PingError(Exception):
    pass


class ResetError(Exception):
    pass


class KillError(Exception):
    """The side connection of a kill could not be opened (retryable)."""


class TooManySessions(Exception):
    """The side connection of a kill was refused: the account has no session to spare (1040, 1226)."""


class KillRefused(Exception):
    """The server answered the KILL with an error (not the owner)."""


class FakeRaw:
    """A driver connection: flags the fake driver's predicates read."""

    sessions = 0

    def __init__(self) -> None:
        FakeRaw.sessions += 1
        self.session = FakeRaw.sessions  # the server's id of its session
        self.closed = False
        self.broken = False
        self.dirty = False
        self.mid = False
        self.pending = False
        self.hung = False
        self.slot: Optional[Slot] = None
        self.wrong_node: Optional[Callable[[], Any]] = None
        self.interrupted = False
        self.condemned = False  # failed a check, a ping or a reset: never to be lent or parked again

    def close(self) -> None:
        assert not self.closed, "a connection closed twice"
        self.closed = True


class FakeDriver:
    """The non-blocking driver functions the core calls via ``self._drv``."""

    @staticmethod
    def force_close(raw: FakeRaw) -> None:
        raw.closed = True  # idempotent, as the real one

    @staticmethod
    def is_broken(raw: FakeRaw) -> bool:
        return raw.broken

    @staticmethod
    def mid_answer(raw: FakeRaw) -> bool:
        return raw.mid

    @staticmethod
    def results_pending(raw: FakeRaw) -> bool:
        return raw.pending

    @staticmethod
    def needs_reset(raw: FakeRaw, autocommit: bool) -> bool:
        return raw.dirty

    @staticmethod
    def make_probe(raw: FakeRaw) -> Callable[[int], List[Any]]:
        return lambda timeout: [1] if raw.hung else []

    @staticmethod
    def watch_wrong_node(raw: FakeRaw, hook: Callable[[], Any]) -> None:
        raw.wrong_node = hook

    @staticmethod
    def interrupt(raw: FakeRaw) -> None:
        raw.interrupted = True

    @staticmethod
    def abandon(raw: FakeRaw) -> None:
        raise AssertionError("no fork here")

    @staticmethod
    def is_fatal_connect_error(exc: BaseException) -> bool:
        return isinstance(exc, FatalConnectError)

    @staticmethod
    def left_running(raw: FakeRaw) -> bool:
        return raw.mid

    @staticmethod
    def session_id(raw: FakeRaw) -> int:
        return raw.session

    @staticmethod
    def kill_refused(exc: BaseException) -> bool:
        return isinstance(exc, KillRefused)

    @staticmethod
    def too_many_sessions(exc: BaseException) -> bool:
        return isinstance(exc, TooManySessions)  # the kill then goes over an idle connection

    @staticmethod
    def unfinished(exc: BaseException) -> Optional[FakeRaw]:
        return exc.__dict__.pop("unfinished", None)  # type: ignore[no-any-return]


class RecordingWaiter(Waiter):
    """A waiter whose wake() only records that it was called."""

    __slots__ = ("wakes",)

    def __init__(self, since: float) -> None:
        self.wakes = 0
        super().__init__(since, self._record)

    def _record(self) -> None:
        self.wakes += 1


class OrderedSlots(Dict[Slot, None]):
    """The core's set of open slots, iterated in the order they opened: a
    plain set iterates in address order, which would make the core's choices
    (which slot resize() marks) differ between runs of one example."""

    def add(self, slot: Slot) -> None:
        self[slot] = None

    def discard(self, slot: Slot) -> None:
        self.pop(slot, None)


class CoreUnderTest(PoolCore):
    _drv = FakeDriver
    _waiter = RecordingWaiter
    _kind = "CoreUnderTest"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._books.slots = OrderedSlots()  # type: ignore[assignment]
        self.made: List[Slot] = []  # every slot ever opened, to follow NEW ones in flight
        self.unfinished: List[Slot] = []  # dials cut after the server made their session, then booked
        # The shell's background start of a kill plan (None: cannot start one).
        self.spawner: Optional[Callable[[Plan], bool]] = None

    # get_conn's slow paths: the test runs the borrow plan itself, step by step.
    def _acquire(self, timeout: Optional[float], force_check: bool) -> Tuple[str, None]:
        return ("acquire", None)

    def _borrow(self, first: Optional[Slot], timeout: Optional[float], force_check: bool) -> Tuple[str, Optional[Slot]]:
        return ("borrow", first)

    def _return_slow(self, slot: Slot, failed: bool) -> str:
        return SLOW  # the test runs the return plan itself, step by step

    def _spawn(self, plan: Plan) -> bool:
        if self.spawner is None:
            return super()._spawn(plan)
        return self.spawner(plan)

    def _book_new(self, raw: Any, keepalive: float, started: float, epoch: int) -> Slot:
        slot = super()._book_new(raw, keepalive, started, epoch)
        raw.slot = slot
        self.made.append(slot)
        return slot

    def _start_kill(self, slot: Slot) -> None:
        if slot.raw.slot is None:  # a dial cut in its set-up, booked KILLING in its token's place
            slot.raw.slot = slot
            self.made.append(slot)
            self.unfinished.append(slot)
        super()._start_kill(slot)


class Proxy:
    """What a shell hands a borrower: the core checks ``_slot`` on return, and
    ``slot.proxied`` tells its reconcile a lent slot from an orphaned one.
    Made as the core makes its proxies: called with no argument, its slots
    set by the core (PoolCore._get_conn)."""

    __slots__ = ("_pool", "_raw", "_slot")
    _pool: PoolCore
    _slot: Optional[Slot]
    _raw: Any

    def _returned_twice(self) -> ReturnConnectionToPoolError:
        return ReturnConnectionToPoolError("returned twice")

    @classmethod
    def proxy_for(cls, raw: Any) -> type:  # the class the core books each slot to lend as
        return cls


CoreUnderTest._proxy = Proxy
PROXY_TYPES.add(Proxy)  # what the core takes back (Borrowed's subclasses add themselves)
SLOW = "slow"  # what CoreUnderTest._give_back returns for a return to finish by its plan


class FakeMaintenance:
    def __init__(self) -> None:
        self.wakes = 0

    def wake(self) -> None:
        self.wakes += 1

    def stop(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Running:
    """A plan suspended at a request."""

    def __init__(self, kind: str, gen: Plan, slot: Optional[Slot] = None, proxy: Optional[Proxy] = None) -> None:
        self.kind = kind
        self.gen = gen
        self.request: Tuple[int, Any, Any] = (-1, None, None)
        self.slot = slot
        self.proxy = proxy

    def frames(self) -> Iterator[Any]:
        gen: Any = self.gen
        while gen is not None and getattr(gen, "gi_frame", None) is not None:
            yield gen.gi_frame
            gen = gen.gi_yieldfrom

    def held(self) -> Tuple[Set[int], Set[int]]:
        """ids of the slots and live dial tokens this plan references."""
        slots: Set[int] = set()
        tokens: Set[int] = set()

        def note(value: Any) -> None:
            if isinstance(value, Slot):
                slots.add(id(value))
            elif isinstance(value, DialToken) and value.live:
                tokens.add(id(value))
            elif isinstance(value, Waiter):
                note(value.grant)

        for frame in self.frames():
            for value in frame.f_locals.values():
                if isinstance(value, (list, tuple)):
                    for item in value:
                        note(item)
                else:
                    note(value)
        if self.request[0] == WAIT:
            note(self.request[1])
        return slots, tokens

    def __repr__(self) -> str:
        op, _a, _b = self.request
        return f"<{self.kind} at {OP_NAMES.get(op, op)}>"


def make_core(
    clock: Clock,
    maxsize: int,
    *,
    size: int = 0,
    pre_create_num: int = 0,
    timeout: float = 5.0,
    window: float = 0.5,
    lifetime: float = LIFETIME,
    max_idle: float = 0.0,
    keepalive: float = 0.0,
    reset_session: bool = False,
    max_waiting: Optional[int] = None,
    kill_on_abandon: bool = True,
    events: Any = None,
) -> CoreUnderTest:
    config = build(
        size=size,
        maxsize=maxsize,
        name="core",
        pool_name=None,
        pre_create_num=pre_create_num,
        con_lifetime=lifetime,
        autocommit=True,
        timeout=timeout,
        validation_interval=window,
        keepalive_interval=keepalive,
        max_idle=max_idle,
        leak_timeout=None,
        reset_session=reset_session,
        configure=None,
        check=None,
        connection_factory=FakeRaw,  # never called: the machine answers DIAL itself
        connect_kwargs={"connect_timeout": IO_TIMEOUT},
    )
    core = CoreUnderTest(
        config,
        NoLock(),
        events=events,
        reset=None,
        open=True,
        max_waiting=max_waiting,
        reconnect_timeout=300.0,
        reconnect_failed=None,
        kill_on_abandon=kill_on_abandon,
        clock=clock,
    )
    assert core._start()
    return core


class Shell:
    """The machine's shell: starts plans, answers their requests one at a
    time, and does what a shell does when a plan ends."""

    def __init__(self, core: CoreUnderTest, clock: Clock) -> None:
        self.core = core
        self.clock = clock
        self.plans: List[Running] = []
        self.lent: List[Proxy] = []
        self.raws: List[FakeRaw] = []
        self.gone: Set[int] = set()
        self.seen: Dict[Any, Tuple[Any, float]] = {}
        # Plans whose clean-up never ran: an interrupt landed inside the
        # clean-up of another. Kept referenced, never resumed (see vanish).
        self.zombies: List[Running] = []
        self.borrows_done = 0
        self.borrows_failed = 0
        self.returns = 0
        self.results: List[Tuple[str, Any]] = []  # (kind, value or exception) of ended plans
        # KILLING slots whose kill plan was interrupted: the reconcile's, once past their bound.
        self.unkilled: Set[int] = set()
        core.spawner = self.spawn_kill

    def spawn_kill(self, plan: Plan) -> bool:
        """The shell's background start of a kill (a thread, a task)."""
        self.start("kill", plan)
        return True

    # -- starting -------------------------------------------------------------

    def start(self, kind: str, gen: Plan, slot: Optional[Slot] = None, proxy: Optional[Proxy] = None) -> Running:
        run = Running(kind, gen, slot, proxy)
        self.step(run, lambda: gen.send(None))
        return run

    def borrow(self, timeout: Optional[float] = None, force: bool = False, fast: bool = False) -> Optional[Running]:
        """A borrow as get_conn() does it: the direct path first when ``fast``."""
        core = self.core
        if fast and not core._reclaim:
            got = core._get_conn()
            if isinstance(got, Proxy):
                assert got._slot is not None
                self.lend(got._slot, got)
                return None
            _, first = got  # CoreUnderTest._borrow's or _acquire's: the plan is run here
            return self.start("borrow", core._borrow_plan(first, None, False))
        return self.start("borrow", core._borrow_plan(None, timeout, force))

    def give_back(self, proxy: Proxy, failed: bool = False) -> Optional[Running]:
        slot = proxy._slot
        assert slot is not None
        self.lent.remove(proxy)
        done = self.core._give_back(proxy, failed)
        self.returns += 1
        assert proxy._slot is None
        with pytest.raises(ReturnConnectionToPoolError):
            self.core._give_back(proxy, failed)
        if done is None:
            return None
        assert done == SLOW
        assert slot.state == HELD
        return self.start("return", self.core._return_plan(slot, failed), slot, proxy)

    def close(self) -> None:
        shut = self.core._shut()
        if shut is None:
            return
        idle, maintenance = shut
        if maintenance is not None:
            maintenance.stop()
        self.start("close", self.core._dispose_all_plan(idle, "closed_on_pool_close"))
        self.start("reclaim", self.core._reclaim_plan())

    def lend(self, slot: Slot, proxy: Optional[Proxy] = None) -> None:
        assert isinstance(slot, Slot)
        assert slot.state == OUT, slot.state
        assert slot in self.core._slots
        assert slot not in self.core._idle
        assert not slot.raw.closed
        assert id(slot) not in self.gone
        assert all(p._slot is not slot for p in self.lent if p is not proxy), "a slot lent twice"
        self.lent.append(lend(self.core, slot) if proxy is None else proxy)  # the shells' lend
        self.borrows_done += 1

    # -- running ----------------------------------------------------------------

    def step(self, run: Running, action: Callable[[], Any], interrupted: bool = False) -> None:
        try:
            request = action()
        except StopIteration as done:
            assert not interrupted, f"{run} ended normally after an interrupt"
            self.finished(run, done.value)
            return
        except KeyboardInterrupt:
            assert interrupted, f"{run} raised KeyboardInterrupt of its own"
            self.interrupted(run)
            return
        except Exception as exc:
            assert not interrupted, f"{run} raised {exc!r} instead of the interrupt"
            self.failed(run, exc)
            return
        assert not interrupted, f"{run.kind} yielded {request} after an interrupt: it must give up without waiting"
        self.check_request(run, request)
        run.request = request
        self.plans.append(run)

    def check_request(self, run: Running, request: Tuple[int, Any, Any]) -> None:
        op, a, b = request
        assert op in OP_NAMES, request
        if op == DIAL:
            assert b is None and 0 < a <= IO_TIMEOUT, request
        elif op == WAIT:
            assert run.kind == "borrow"
            assert isinstance(a, RecordingWaiter)
            assert math.isfinite(b)
        elif op == SLEEP:
            assert run.kind in ("borrow", "kill")
            assert 0 < a <= (IO_TIMEOUT + 1e-6 if run.kind == "kill" else plans.BACKOFF_CAP), (run.kind, request)
        elif op == KILL:
            assert run.kind == "kill" and 0 < b <= KILL_BOUND + 1e-6, request
            session, age, *over = a
            (slot,) = [s for s in self.core._slots if s.session == session]
            assert age == self.clock.now - slot.created
            assert slot.state == KILLING and slot.raw.closed, "a KILL for a session the pool does not hold closed"
            if over:  # sent over an idle connection of the pool's, held by this kill
                (raw,) = over
                assert isinstance(raw, FakeRaw) and not raw.closed and raw.slot is not None
                assert raw.slot.state == HELD and all(p._slot is not raw.slot for p in self.lent), request
        else:
            self.check_io(run, request, [other for other in self.plans if other is not run])

    def check_io(self, run: Running, request: Tuple[int, Any, Any], others: List[Running]) -> None:
        """A plan talks only on a connection it owns: open, not lent, not idle,
        and no other plan talking on it."""
        op, raw, _b = request
        assert isinstance(raw, FakeRaw) and not raw.closed, f"{run}: {OP_NAMES[op]} on a closed connection"
        slot = raw.slot
        assert slot is not None
        assert all(other.request[1] is not raw for other in others), f"{run} and another plan talk on one connection"
        assert all(p._slot is not slot for p in self.lent), f"{run}: the pool talks on a lent connection"
        expected = {CHECK: (OUT, HELD), PING: (HELD,), RESET: (HELD,), CLOSE: (HELD, NEW)}[op]
        assert slot.state in expected, f"{run}: {OP_NAMES[op]} on a slot in state {slot.state}"
        if op == CHECK and slot.state == OUT:
            assert run.kind == "borrow"

    def answer(self, run: Running, outcome: str, flavor: int = 0) -> None:
        """Answer ``run``'s request: "ok", "fail" (an error thrown in), "fatal"
        (a fatal connect error, otherwise as "fail") or "interrupt"."""
        self.plans.remove(run)
        gen = run.gen
        op, a, b = run.request
        if outcome == "interrupt":
            if run.kind == "kill":  # left KILLING: the reconcile frees it after its bound
                self.unkilled |= run.held()[0]
            interrupt = KeyboardInterrupt()
            if op == DIAL and flavor % 2:  # cut in its set-up: the server made the session, the shell closed it
                cut = FakeRaw()
                cut.closed = True
                interrupt.unfinished = cut  # type: ignore[attr-defined]  # what _driver.note_unfinished leaves
            self.step(run, lambda: gen.throw(interrupt), interrupted=True)
            return
        reply: Any = None
        error: Optional[BaseException] = None
        if op == DIAL:
            if outcome == "ok":
                raw = FakeRaw()
                self.raws.append(raw)
                reply = (raw, (3.0, 0.0)[flavor % 2])
            else:
                error = FatalConnectError("denied") if outcome == "fatal" else ConnectError("unreachable")
        elif op in (CHECK, PING):
            if outcome != "ok":
                error = PingError("gone away")
        elif op == RESET:
            if outcome == "ok":
                reply = bool(flavor % 2)
            else:
                error = ResetError("reset failed")
        elif op == CLOSE:
            a.close()  # never raises in a shell
        elif op == WAIT:
            waiter: RecordingWaiter = a
            served = waiter.grant is not None or waiter.error is not None
            assert waiter.wakes == (1 if served else 0), "woken without a grant, or twice"
            assert waiter.queued == (not served)
            if outcome == "ok" and served:
                reply = True
            else:  # timed out (perhaps just as it was served)
                self.clock.now = max(self.clock.now, waiter.since + b)
                reply = False
        elif op == SLEEP:
            self.clock.now += a
        elif op == KILL:
            if outcome == "ok":
                reply = flavor % 3 != 2  # gone, or still listed when its time ran out
                if not reply:
                    self.clock.now += b
            elif outcome == "fatal":
                error = KillRefused("not the owner")
            elif outcome == "too many":
                error = TooManySessions("too many connections")
            else:  # refused at once, or (odd flavors) black-holed: its whole budget spent
                self.clock.now += b * (flavor % 2)
                error = KillError("unreachable")
        if error is not None:
            if op in (CHECK, PING, RESET):
                a.condemned = True
            self.step(run, lambda: gen.throw(error))
        else:
            self.step(run, lambda: gen.send(reply))

    def finished(self, run: Running, value: Any) -> None:
        self.results.append((run.kind, value))
        if run.kind == "borrow":
            self.lend(value)
        elif run.kind in ("return", "resize", "close", "round", "reclaim"):
            assert value is None
        elif run.kind in ("check", "drain", "reconcile"):
            assert isinstance(value, int) and value >= 0
        elif run.kind == "refill":
            assert isinstance(value, bool)
        elif run.kind == "kill":
            assert value is None

    def failed(self, run: Running, exc: Exception) -> None:
        self.results.append((run.kind, exc))
        if run.kind == "borrow":
            assert isinstance(exc, (PoolTimeout, PoolClosed, TooManyRequests, ConnectError, FatalConnectError)), exc
            self.borrows_failed += 1
        elif run.kind == "refill":
            assert isinstance(exc, (ConnectError, FatalConnectError)), exc
        else:
            raise AssertionError(f"{run.kind} raised {exc!r}")

    def interrupted(self, run: Running) -> None:
        self.results.append((run.kind, KeyboardInterrupt))
        if run.kind == "return":
            # What the shells' release() does: the session's state is unknown.
            assert run.proxy is not None and run.slot is not None
            if run.proxy._slot is None and run.slot.state == HELD:
                self.core._kill(run.slot, "closed_broken")
        elif run.kind == "borrow" and run.request[0] == WAIT and run.request[1].error is not None:
            self.borrows_failed += 1  # failed by close() (counted then), interrupted before it woke

    def reap_kills(self) -> None:
        """What the maintenance does about kills that will not end (their plan
        was interrupted or vanished): once past their bound, the reconcile
        frees each slot exactly once, counted as a failed kill."""
        self.finish_all()  # kills the reconcile started meanwhile run to their end
        core = self.core
        killing = [slot for slot in core._slots if slot.state == KILLING]
        if not killing:
            return
        failures = core._stats.kill_failures
        self.clock.now = max(self.clock.now, max(slot.kill_by for slot in killing) + plans.TICK)
        self.run_plan("reconcile", core._reconcile_plan(2 * IO_TIMEOUT + 1.0, {}))
        assert all(slot.state == GONE for slot in killing) and core._killing == 0
        assert core._stats.kill_failures == failures + len(killing)

    def reap(self) -> None:
        """What the maintenance does about vanished plans once past the grace
        (none is needed with nothing else running): reconcile until nothing
        is left to them. Each pass may hand a right to dial or a returned slot
        to a vanished waiter still queued, so one pass per vanished plan."""
        assert not self.plans
        for _ in range(len(self.zombies) + 1):
            self.run_plan("reconcile", self.core._reconcile_plan(0.0, {}))
        self.reap_kills()
        self.check_books(zombies_own=False)

    def finish_all(self, limit: int = 400) -> None:
        """Run every suspended plan to its end, answering every request with success."""
        for _ in range(limit):
            if not self.plans:
                return
            self.answer(self.plans[0], "ok")
            self.check_books()
        raise AssertionError(f"plans still running after {limit} answers: {self.plans}")

    def run_plan(self, kind: str, gen: Plan, limit: int = 100) -> Any:
        """Start a plan and run it alone to its end with successful answers."""
        run = self.start(kind, gen)
        for _ in range(limit):
            if run not in self.plans:
                return self.results[-1][1]
            assert run.request[0] != WAIT, f"{kind} had to wait with nothing else running"
            self.answer(run, "ok")
        raise AssertionError(f"{kind} did not end after {limit} answers")

    # -- the books ----------------------------------------------------------------

    def check_books(self, maxsize_floor: Optional[int] = None, zombies_own: bool = True) -> None:
        core = self.core
        # The books' own rules first: counts, idle deque, waiters, maxsize
        # (after resize() shrank the pool, the extras are marked or shed on
        # arrival), connections_made against the closes.
        in_flight = [s for s in core.made if s.state == NEW]
        shed = core._life.shed + sum(1 for s in in_flight if s.retire is not None)
        core._books.check_invariants(surplus=shed, lending=not core._closed)
        slots = core._slots
        counts = {state: 0 for state in (NEW, IDLE, OUT, HELD, GONE, KILLING)}
        for slot in slots:
            counts[slot.state] += 1

        # Ownership: every lent or held slot and every live right to dial
        # belongs to a borrower or a suspended plan (plans may also keep stale
        # references, so this finds leaks, not sharing: check_io finds that).
        owned: Set[int] = set()
        tokens: Set[int] = set()
        for proxy in self.lent:
            slot = proxy._slot
            assert slot is not None and slot.state == OUT and slot in slots, "a lent slot not OUT"
            owned.add(id(slot))
        assert len(owned) == len(self.lent), "one slot lent to two borrowers"
        owned |= {id(slot) for slot in core._reclaim if slot.state == OUT}  # dropped proxies: maintenance's
        for run in self.plans + (self.zombies if zombies_own else []):
            held, live = run.held()
            owned |= held
            tokens |= live
        for run in self.plans:
            if run.request[0] in (CHECK, PING, RESET, CLOSE):
                self.check_io(run, run.request, [other for other in self.plans if other is not run])
        for slot in slots:
            if slot.state in (OUT, HELD):
                assert id(slot) in owned, f"a slot in state {slot.state} that no borrower or plan holds"
            elif slot.state == KILLING:
                # Killed by a plan, or left by an interrupted one to the reconcile.
                assert id(slot) in owned or id(slot) in self.unkilled, "a KILLING slot no kill plan holds"
        assert core._connecting == len(tokens), f"connecting={core._connecting} but {len(tokens)} rights to dial held"

        if maxsize_floor is not None:
            assert core._open + core._connecting <= maxsize_floor

        waiters = list(core._waiters)
        waiting = [run.request[1] for run in self.plans + self.zombies if run.request[0] == WAIT]
        assert {id(w) for w in waiters} <= {id(w) for w in waiting}, "a queued waiter nobody waits on"

        stats = core._stats
        assert all(run_holds(self.plans + self.zombies, s) for s in in_flight), "a NEW slot no plan holds"
        # A dialed connection is counted once booked or closed, not while in flight.
        assert stats.connections_made == len(core.made) - len(in_flight)
        for slot in core.made:
            if id(slot) in self.gone:
                assert slot.state == GONE, "a closed slot came back"
            if slot.state == GONE:
                self.gone.add(id(slot))
                assert slot not in slots
            closed = slot.state in (GONE, KILLING)
            assert slot.raw.closed == closed, f"state {slot.state} but closed={slot.raw.closed}"
            if slot.raw.condemned:
                assert slot.state in (HELD, GONE, KILLING), "a connection that failed a check or reset is kept"
        assert len(core.made) == len(self.raws) + len(core.unfinished)

        if not self.plans and not self.zombies:
            assert core._held == counts[KILLING] and core._connecting == 0 and not in_flight and not waiters
            assert all(id(s) in self.unkilled for s in slots if s.state == KILLING)
            assert stats.borrows == self.borrows_done, (stats.borrows, self.borrows_done)
            assert stats.returns == self.returns
            refused = stats.borrow_timeouts + stats.borrow_errors + stats.borrows_rejected
            assert refused == self.borrows_failed, (refused, self.borrows_failed)


def run_holds(plans: List[Running], slot: Slot) -> bool:
    return any(id(slot) in run.held()[0] for run in plans)


OUTCOMES = ["ok", "ok", "ok", "fail", "fail", "fatal", "interrupt"]


class CoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()  # the core's, passed to it (make_core)
        self.shell: Optional[Shell] = None
        self.close_first = False

    @initialize(
        maxsize=st.integers(1, 3),
        size=st.integers(0, 3),
        pre_create=st.booleans(),
        window=st.sampled_from([0.5, 0.0, 1e6]),
        lifetime=st.sampled_from([LIFETIME, 0.0]),
        max_idle=st.sampled_from([0.0, 2.0]),
        reset_session=st.booleans(),
        max_waiting=st.sampled_from([None, None, 1]),
        timeout=st.sampled_from([5.0, 0.0, 0.5]),
        warm=st.integers(0, 3),
        close_first=st.booleans(),
    )
    def setup(
        self,
        maxsize: int,
        size: int,
        pre_create: bool,
        window: float,
        lifetime: float,
        max_idle: float,
        reset_session: bool,
        max_waiting: Optional[int],
        timeout: float,
        warm: int,
        close_first: bool,
    ) -> None:
        self.close_first = close_first
        core = make_core(
            self.clock,
            maxsize,
            size=min(size, maxsize),
            pre_create_num=int(pre_create),
            timeout=timeout,
            window=window,
            lifetime=lifetime,
            max_idle=max_idle,
            keepalive=3.0,
            reset_session=reset_session,
            max_waiting=max_waiting,
        )
        core._maintenance = FakeMaintenance()
        self.shell = shell = Shell(core, self.clock)
        # Start with up to ``warm`` idle connections.
        for _ in range(min(warm, maxsize)):
            shell.run_plan("borrow", core._borrow_plan(None, 0.0, False))
        for proxy in list(shell.lent):
            shell.give_back(proxy)
        shell.check_books()

    def teardown(self) -> None:
        shell = self.shell
        if shell is None:
            return
        core = shell.core
        if self.close_first:  # close() with plans in flight and connections lent
            shell.close()
        shell.finish_all()
        assert shell.run_plan("reclaim", core._reclaim_plan()) is None
        for proxy in list(shell.lent):
            shell.give_back(proxy)
            shell.finish_all()
        shell.check_books()
        if shell.zombies:
            shell.reap()
        shell.reap_kills()
        orphans = shell.run_plan("reconcile", core._reconcile_plan(0.0, {}))
        assert orphans == 0, f"{orphans} slot(s) orphaned with no plan running"
        shell.check_books(zombies_own=False)
        if not core._closed:
            # Every one of maxsize can be borrowed, none has to wait.
            for _ in range(core._maxsize):
                slot = shell.run_plan("borrow", core._borrow_plan(None, 0.0, False))
                assert isinstance(slot, Slot), slot
                shell.check_books()
            assert len(shell.lent) == core._maxsize
            for proxy in list(shell.lent):
                shell.give_back(proxy)
                shell.finish_all()
        shell.close()
        shell.finish_all()
        if shell.zombies:
            shell.reap()  # a slot given back meanwhile may have gone to a vanished waiter
        shell.reap_kills()
        shell.check_books(zombies_own=False)
        assert core._open == 0 and not core._slots
        assert all(raw.closed for raw in shell.raws), "a connection left open after close"

    @property
    def s(self) -> Shell:
        assert self.shell is not None
        return self.shell

    def room(self) -> bool:
        return self.shell is not None and len(self.shell.plans) < MAX_PLANS

    def lent(self) -> bool:
        return self.shell is not None and bool(self.shell.lent)

    def running(self) -> bool:
        return self.shell is not None and bool(self.shell.plans)

    # -- starting plans -----------------------------------------------------------

    def may_borrow(self) -> bool:
        return self.room() and sum(run.kind == "borrow" for run in self.s.plans) < 3

    @precondition(may_borrow)
    @rule(timeout=st.sampled_from([None, None, 0.0, 1.0]), force=st.booleans(), fast=st.booleans(), now=st.booleans())
    def borrow(self, timeout: Optional[float], force: bool, fast: bool, now: bool) -> None:
        """A borrow (by get_conn()'s direct path when ``fast``); ``now``: its
        requests answered with success until it is lent or waits."""
        run = self.s.borrow(timeout, force, fast and timeout is None and not force)
        if run is not None and now:
            self.complete_run(run)

    @precondition(lambda self: self.lent() and len(self.s.plans) < MAX_PLANS + 2)
    @rule(pick=st.integers(0, 7))
    def give_back_clean(self, pick: int) -> None:
        self.s.give_back(self.s.lent[pick % len(self.s.lent)])

    @precondition(lambda self: self.lent() and len(self.s.plans) < MAX_PLANS + 2)
    @rule(pick=st.integers(0, 7), failed=st.booleans(), flags=st.integers(0, 31))
    def give_back(self, pick: int, failed: bool, flags: int) -> None:
        proxy = self.s.lent[pick % len(self.s.lent)]
        raw: FakeRaw = proxy._raw
        # Mostly clean returns; each flag makes the slow path or a close.
        raw.dirty = bool(flags & 1) and flags > 16
        raw.broken = bool(flags & 2) and flags > 24
        raw.mid = bool(flags & 4) and flags > 24
        raw.pending = bool(flags & 8)
        raw.hung = bool(flags & 16) and flags & 3 == 3
        self.s.give_back(proxy, failed)

    @precondition(lambda self: self.lent() and len(self.s.plans) < MAX_PLANS + 2)
    @rule(pick=st.integers(0, 7), broken=st.booleans(), failed=st.booleans())
    def abandon(self, pick: int, broken: bool, failed: bool) -> None:
        """A borrower leaves in the middle of an answer (cancelled, interrupted,
        read_timeout: then the driver dropped the socket too): its session
        may still be running, so the pool kills it and holds the slot."""
        proxy = self.s.lent[pick % len(self.s.lent)]
        raw: FakeRaw = proxy._raw
        raw.mid = True
        raw.broken = broken
        self.s.give_back(proxy, failed)

    @precondition(room)
    @rule(
        kind=st.sampled_from(["check", "check", "drain", "resize", "round", "later_round", "refill", "close"]),
        maxsize=st.integers(1, 4),
        size=st.integers(0, 4),
        rare=st.integers(0, 3),
    )
    def control(self, kind: str, maxsize: int, size: int, rare: int) -> None:
        """What pool methods and the maintenance do: one plan started."""
        shell = self.s
        core = shell.core
        if kind == "check":
            shell.start("check", core._check_plan())
        elif kind == "drain":
            shell.start("drain", core._drain_plan())
        elif kind == "resize":
            maxsize = max(maxsize, core._config.pre_create_num)
            shell.start("resize", core._resize_plan(maxsize, min(size, maxsize)))
        elif kind == "round":
            shell.start("round", core._round_plan(shell.seen))
        elif kind == "later_round":  # the next round, once idle ones are due a keep-alive ping
            self.clock.now += 4.0
            shell.start("round", core._round_plan(shell.seen))
        elif kind == "refill":
            shell.start("refill", core._refill_plan())
        elif rare < 2:  # close: a closed pool has little left to test
            shell.close()

    @precondition(lambda self: self.shell is not None)
    @rule(
        kind=st.sampled_from(["tick", "tick", "wrong_node", "drop_proxy", "age"]),
        pick=st.integers(0, 7),
        dt=st.sampled_from([0.0001, 0.4, 1.0, 4.0]),
    )
    def happen(self, kind: str, pick: int, dt: float) -> None:
        """Time passes, or something happens to a lent connection."""
        shell = self.s
        if kind == "tick":
            self.clock.now += dt
        elif kind == "age":
            # Past every connection's lifetime; not while a borrow is in
            # flight (a real one would have ended by then).
            if not any(run.kind == "borrow" for run in shell.plans):
                self.clock.now += 2 * LIFETIME
        elif shell.lent and kind == "wrong_node":
            raw: FakeRaw = shell.lent[pick % len(shell.lent)]._raw
            assert raw.wrong_node is not None
            raw.wrong_node()  # the driver saw a read-only/wrong-node error
        elif shell.lent:
            # The borrower drops its proxy: the shell's __del__ calls _leaked.
            proxy = shell.lent.pop(pick % len(shell.lent))
            slot = proxy._slot
            assert slot is not None
            del proxy
            shell.core._leaked(slot)

    # -- advancing one suspended plan ---------------------------------------------------

    @precondition(running)
    @rule(pick=st.integers(0, 7), outcome=st.sampled_from(OUTCOMES), flavor=st.integers(0, 3))
    def advance(self, pick: int, outcome: str, flavor: int) -> None:
        self.s.answer(self.s.plans[pick % len(self.s.plans)], outcome, flavor)

    @precondition(running)
    @rule(pick=st.integers(0, 7), waiting=st.booleans())
    def interrupt(self, pick: int, waiting: bool) -> None:
        """KeyboardInterrupt or a cancellation lands in a plan (``waiting``:
        preferably one whose borrower was served but has not woken yet)."""
        plans = self.s.plans
        served = [run for run in plans if run.request[0] == WAIT and not run.request[1].queued]
        pool = served if waiting and served else plans
        self.s.answer(pool[pick % len(pool)], "interrupt")

    @precondition(lambda self: self.running() and len(self.s.zombies) < 3)
    @rule(pick=st.integers(0, 7))
    def vanish(self, pick: int) -> None:
        """An interrupt lands in a plan and a second one inside its clean-up:
        none of the clean-up runs, what it held is left to nobody."""
        shell = self.s
        shell.zombies.append(shell.plans.pop(pick % len(shell.plans)))

    @precondition(lambda self: self.shell is not None and bool(self.shell.zombies) and not self.shell.plans)
    @rule()
    def orphan_round(self) -> None:
        """Maintenance rounds on either side of the grace (no plan in flight:
        a real one would have ended within it)."""
        shell = self.s
        grace = 2 * IO_TIMEOUT + 1.0
        shell.run_plan("reconcile", shell.core._reconcile_plan(grace, shell.seen))
        self.clock.now += grace
        shell.run_plan("reconcile", shell.core._reconcile_plan(grace, shell.seen))

    @precondition(running)
    @rule(pick=st.integers(0, 7), flavor=st.integers(0, 3))
    def advance_ok(self, pick: int, flavor: int) -> None:
        self.s.answer(self.s.plans[pick % len(self.s.plans)], "ok", flavor)

    @precondition(running)
    @rule(pick=st.integers(0, 7))
    def complete(self, pick: int) -> None:
        self.complete_run(self.s.plans[pick % len(self.s.plans)])

    def complete_run(self, run: Running) -> None:
        """Answer one plan with success until it ends or waits for a grant."""
        shell = self.s
        for _ in range(20):
            if run not in shell.plans:
                return
            op, waiter, _timeout = run.request
            if op == WAIT and waiter.queued:
                return
            shell.answer(run, "ok")
            shell.check_books()

    @invariant()
    def books(self) -> None:
        if self.shell is not None:
            self.shell.check_books()


CoreMachine.TestCase.settings = SETTINGS
# The machine drops proxies on purpose (the "lent" events): their reclaims warn.
test_core_machine = pytest.mark.usefixtures("leak_warnings")(CoreMachine.TestCase)


# -- directed tests -----------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()  # each test passes it to its core (make_core)


def borrowed(shell: Shell, n: int) -> List[Proxy]:
    for _ in range(n):
        shell.run_plan("borrow", shell.core._borrow_plan(None, None, False))
    return list(shell.lent)


def test_hand_over_is_fifo(clock: Clock) -> None:
    """Returned connections and freed room go to the waiters oldest first."""
    shell = Shell(make_core(clock, 2, timeout=30.0), clock)
    first, second = borrowed(shell, 2)
    waiters = [shell.borrow() for _ in range(4)]
    assert all(w is not None and w.request[0] == WAIT for w in waiters)
    assert [w.request[1] for w in waiters] == list(shell.core._waiters)
    shell.check_books()
    slot = first._slot
    shell.give_back(first)  # clean: straight to the oldest waiter
    assert waiters[0].request[1].grant is slot
    assert all(w.request[1].grant is None for w in waiters[1:])
    second._raw.dirty = second._raw.broken = True
    closing = shell.give_back(second)  # closed: its room goes to the next waiter as a right to dial
    assert closing is not None and closing.request[0] == CLOSE
    shell.answer(closing, "ok")
    assert isinstance(waiters[1].request[1].grant, DialToken)
    assert all(w.request[1].grant is None for w in waiters[2:])
    shell.check_books()
    # The last two wait their turn behind the first two's connections.
    shell.answer(waiters[1], "ok")
    assert waiters[1].request[0] == DIAL
    shell.answer(waiters[1], "ok")
    shell.answer(waiters[0], "ok")
    assert len(shell.lent) == 2 and shell.lent[1]._slot is slot
    for proxy in list(shell.lent):
        shell.give_back(proxy)
    assert waiters[2].request[1].grant is not None and waiters[3].request[1].grant is not None
    shell.check_books()
    shell.finish_all()
    assert len(shell.lent) == 2


def test_wait_timed_out_after_being_served_keeps_the_grant(clock: Clock) -> None:
    """A wait that reports a timeout just as the waiter was served still lends the grant."""
    shell = Shell(make_core(clock, 1, timeout=1.0, window=10.0), clock)
    (proxy,) = borrowed(shell, 1)
    slot = proxy._slot
    run = shell.borrow()
    assert run is not None and run.request[0] == WAIT
    shell.give_back(proxy)
    assert run.request[1].grant is slot
    shell.answer(run, "timeout")  # WAIT returns False
    assert run not in shell.plans
    assert shell.results[-1] == ("borrow", slot)
    stats = shell.core._stats
    assert stats.borrow_timeouts == 0 and stats.borrows == 2
    shell.check_books()


def test_wait_timed_out_unserved_raises(clock: Clock) -> None:
    shell = Shell(make_core(clock, 1, timeout=1.0), clock)
    borrowed(shell, 1)
    run = shell.borrow()
    assert run is not None
    shell.answer(run, "timeout")
    _kind, exc = shell.results[-1]
    assert isinstance(exc, PoolTimeout)
    assert shell.core._stats.borrow_timeouts == 1 and not shell.core._waiters
    shell.check_books()


def reach(shell: Shell, op: int) -> Running:
    """Set up a plan suspended at a request of kind ``op``."""
    core = shell.core
    if op == DIAL:
        run = shell.borrow()
    elif op == WAIT:
        borrowed(shell, core._maxsize)
        run = shell.borrow()
    elif op == CHECK:
        (proxy,) = borrowed(shell, 1)
        shell.give_back(proxy)
        shell.clock.now += 1.0  # past the validation window
        run = shell.borrow()
    elif op == PING:
        (proxy,) = borrowed(shell, 1)
        shell.give_back(proxy)
        shell.clock.now += 5.0  # past the keep-alive interval
        run = shell.start("round", core._round_plan(shell.seen))
    elif op == RESET:
        (proxy,) = borrowed(shell, 1)
        proxy._raw.dirty = True
        run = shell.give_back(proxy)
    elif op == CLOSE:
        (proxy,) = borrowed(shell, 1)
        proxy._raw.dirty = proxy._raw.broken = True  # dirty: the slow return, which finds it broken
        run = shell.give_back(proxy)
    assert run is not None and run.request[0] == op, run
    return run


BACKOFF = -1  # not a request: the WAIT of a borrow backing off after a failed connect


def reach_backoff(shell: Shell) -> Running:
    (_proxy,) = borrowed(shell, 1)  # ever connected: a connect error is retried
    run = shell.borrow()
    assert run is not None and run.request[0] == DIAL
    shell.answer(run, "fail")
    assert run.request[0] == WAIT and run.request[1].backoff
    return run


def test_a_borrow_backing_off_takes_a_connection_returned_meanwhile(clock: Clock) -> None:
    """A borrow whose connect failed (the server refusing more sessions of
    the account: 1226) waits out its back-off as a waiter: a connection
    returned meanwhile is handed to it at once, not found after the pause."""
    shell = Shell(make_core(clock, 2, timeout=30.0), clock)
    run = reach_backoff(shell)
    (proxy,) = shell.lent
    assert shell.give_back(proxy) is None  # parked: handed to the waiter
    assert run.request[1].grant is not None
    for _ in range(5):
        if run not in shell.plans:
            break
        assert run.request[0] != DIAL, "it dialed instead of taking the returned connection"
        shell.answer(run, "ok")
    assert run not in shell.plans and len(shell.lent) == 1
    assert clock.now == 1000.0  # no time passed: no back-off waited out
    shell.check_books()


def test_a_borrow_backing_off_is_not_given_a_right_to_dial(clock: Clock) -> None:
    """Capacity freed while a borrow backs off does not end its back-off:
    two borrows backing off would otherwise dial in turn without pause."""
    shell = Shell(make_core(clock, 2, timeout=30.0), clock)
    run = reach_backoff(shell)
    waiter = run.request[1]
    core = shell.core
    with core._lock:
        assert not core._pass_capacity()
    assert waiter.grant is None and waiter.queued


@pytest.mark.parametrize(
    "op", [DIAL, CHECK, PING, CLOSE, RESET, WAIT, BACKOFF], ids=lambda op: OP_NAMES.get(op, "BACKOFF")
)
def test_interrupt_at_each_request_leaves_books_exact(clock: Clock, op: int) -> None:
    shell = Shell(make_core(clock, 2, timeout=30.0, keepalive=3.0), clock)
    shell.core._maintenance = FakeMaintenance()
    run = reach_backoff(shell) if op == BACKOFF else reach(shell, op)
    shell.check_books()
    shell.answer(run, "interrupt")
    assert run not in shell.plans
    assert shell.results[-1] == (run.kind, KeyboardInterrupt)
    shell.check_books()
    core = shell.core
    assert core._held == 0 and core._connecting == 0 and not core._waiters
    stats = core._stats
    assert stats.connections_made == sum(stats.closes.values()) + core._open
    for proxy in list(shell.lent):
        shell.give_back(proxy)
    shell.finish_all()
    assert shell.run_plan("reconcile", core._reconcile_plan(0.0, {})) == 0
    for _ in range(core._maxsize):
        shell.run_plan("borrow", core._borrow_plan(None, 0.0, False))
    assert len(shell.lent) == core._maxsize
    shell.check_books()


@pytest.mark.parametrize("end", ["ok", "interrupt"])
@pytest.mark.parametrize("kind", ["check", "keepalive"])
def test_idle_sweep_spares_what_it_put_back(clock: Clock, kind: str, end: str) -> None:
    """check() and the keep-alive round park each connection as soon as it
    passed; when they end (or are interrupted) they must not close one that
    was lent again meanwhile and is now being returned by another caller."""
    shell = Shell(make_core(clock, 2, timeout=30.0, window=10.0), clock)
    for proxy in borrowed(shell, 2):
        shell.give_back(proxy)
    core = shell.core
    if kind == "check":
        sweep = shell.start("check", core._check_plan())
        op = CHECK
    else:
        clock.now += 4.0  # past the keep-alive interval (3 s), within the window
        sweep = shell.start("round", core._round_plan(shell.seen))
        op = PING
    assert sweep.request[0] == op
    shell.answer(sweep, "ok")  # the first one passed and is idle again
    assert sweep.request[0] == op
    (first,) = core._idle
    assert shell.borrow(fast=True) is None  # lent again at once
    proxy = shell.lent[-1]
    assert proxy._slot is first
    proxy._raw.dirty = True
    returning = shell.give_back(proxy)  # its return resets it: HELD by the returner
    assert returning is not None and returning.request[0] == RESET
    shell.answer(sweep, end)
    assert sweep not in shell.plans
    assert first.state == HELD and not first.raw.closed, "the sweep closed a connection it had given back"
    shell.check_books()
    shell.answer(returning, "ok")
    assert first.state == IDLE
    shell.check_books()
    shell.finish_all()


@pytest.mark.parametrize("grant", ["slot", "right to dial"])
def test_interrupt_after_being_served_passes_the_grant_on(clock: Clock, grant: str) -> None:
    """A borrower interrupted after it was handed a connection (or the right
    to dial) but before it woke gives it to the next waiter, unused."""
    shell = Shell(make_core(clock, 1, timeout=30.0, window=10.0), clock)
    (proxy,) = borrowed(shell, 1)
    slot = proxy._slot
    first, second = shell.borrow(), shell.borrow()
    assert first is not None and second is not None
    if grant == "slot":
        shell.give_back(proxy)
        assert first.request[1].grant is slot
    else:
        proxy._raw.dirty = proxy._raw.broken = True
        closing = shell.give_back(proxy)
        assert closing is not None
        shell.answer(closing, "ok")
        assert isinstance(first.request[1].grant, DialToken)
    shell.answer(first, "interrupt")
    shell.check_books()
    handed = second.request[1].grant
    assert handed is slot if grant == "slot" else isinstance(handed, DialToken)
    assert shell.core._stats.borrows == 2  # the first borrow and the second's; not the interrupted one
    shell.finish_all()
    assert len(shell.lent) == 1
    shell.check_books()


def test_a_hold_seized_as_orphaned_is_not_parked_by_its_slow_owner(clock: Clock) -> None:
    """A reset that outlives the grace is taken for orphaned: the reconcile
    closes the slot, and the return, when it finally ends, does not park it."""
    shell = Shell(make_core(clock, 1), clock)
    (proxy,) = borrowed(shell, 1)
    slot = proxy._slot
    assert slot is not None
    proxy._raw.dirty = True
    back = shell.give_back(proxy)
    assert back is not None and back.request[0] == RESET and slot.state == HELD
    seen: Dict[Any, Tuple[Any, float]] = {}
    grace = 2 * IO_TIMEOUT + 1.0
    assert shell.run_plan("reconcile", shell.core._reconcile_plan(grace, seen)) == 0  # within the grace
    clock.now += grace
    assert shell.run_plan("reconcile", shell.core._reconcile_plan(grace, seen)) == 1
    assert slot.state == GONE and slot.raw.closed and not seen
    shell.answer(back, "ok")  # the reset ends after all
    assert back not in shell.plans and slot.state == GONE and not shell.core._idle
    shell.check_books()
    assert shell.core._stats.closes["closed_orphaned"] == 1
    assert len(borrowed(shell, 1)) == 1  # its room was given back


@pytest.mark.parametrize("room_taken", [False, True])
def test_a_dial_whose_right_was_revoked_books_only_into_room(clock: Clock, room_taken: bool) -> None:
    """A dial that outlives the grace loses its right to dial; when it ends it
    is lent if there is room still, else closed and the borrow queues again."""
    shell = Shell(make_core(clock, 1, timeout=3 * IO_TIMEOUT), clock)
    core = shell.core
    slow = shell.borrow()
    assert slow is not None and slow.request[0] == DIAL and core._connecting == 1
    assert shell.run_plan("reconcile", core._reconcile_plan(0.0, {})) == 0  # no slot: the right is given back
    assert core._connecting == 0
    other = None
    if room_taken:
        other = shell.borrow()
        assert other is not None and other.request[0] == DIAL
        shell.answer(other, "ok")
        assert len(shell.lent) == 1
    shell.answer(slow, "ok")  # the slow dial ends
    shell.check_books()
    if not room_taken:
        assert slow not in shell.plans and len(shell.lent) == 1
        assert core._stats.connections_made == 1 and core._open == 1
        return
    # No room: its connection is closed, the borrow waits for the other one.
    assert slow.request[0] == CLOSE
    shell.answer(slow, "ok")
    assert slow.request[0] == WAIT and core._stats.closes["closed_orphaned"] == 1
    shell.give_back(shell.lent[0])
    shell.answer(slow, "ok")
    assert slow not in shell.plans and len(shell.lent) == 1
    shell.check_books()
    assert core._stats.borrows == shell.borrows_done == 2  # the re-queued borrow counted once


@pytest.mark.parametrize("why", ["pool closed", "right revoked"])
def test_a_refill_that_cannot_book_closes_its_connection(clock: Clock, why: str) -> None:
    """A background dial that ends on a closed pool, or after its right to
    dial was revoked and the room taken, closes what it opened and holds
    nothing: no right to dial, no slot, the count of closes says why."""
    shell = Shell(make_core(clock, 1, pre_create_num=1), clock)
    core = shell.core
    refill = shell.start("refill", core._refill_plan())
    assert refill.request[0] == DIAL and core._connecting == 1
    if why == "pool closed":
        shell.close()
    else:
        assert shell.run_plan("reconcile", core._reconcile_plan(0.0, {})) == 0
        assert core._connecting == 0
        borrowed(shell, 1)  # the room is taken
    shell.answer(refill, "ok")  # the dial ends
    assert refill.request[0] == CLOSE
    shell.answer(refill, "ok")
    assert refill not in shell.plans and shell.results[-1] == ("refill", False)
    reason = "closed_on_pool_close" if why == "pool closed" else "closed_orphaned"
    assert core._stats.closes[reason] == 1 and core._connecting == 0
    assert core._open == (0 if why == "pool closed" else 1)
    shell.finish_all()
    shell.check_books()


# -- killing sessions abandoned mid-answer ------------------------------------------


def closed_on_return(shell: Shell, mid: bool, broken: bool) -> Slot:
    """Borrow one connection and give it back failed, ``mid`` an answer and
    ``broken``: the return closes it (answered). Returns its slot."""
    (proxy,) = borrowed(shell, 1)
    slot = proxy._slot
    assert slot is not None
    proxy._raw.mid = mid
    proxy._raw.broken = broken
    back = shell.give_back(proxy, failed=True)
    assert back is not None and back.request[0] == CLOSE
    shell.answer(back, "ok")
    assert back not in shell.plans
    return slot


def abandon_one(shell: Shell, broken: bool = False) -> Tuple[Slot, Running]:
    """Leave a connection mid-answer and give it back: the return closes it
    and the kill of its session starts. Returns the slot (KILLING) and the
    kill plan, suspended at its KILL."""
    slot = closed_on_return(shell, True, broken)
    assert slot.state == KILLING and slot.raw.closed
    (kill,) = [run for run in shell.plans if run.kind == "kill"]
    assert kill.request == (KILL, (slot.raw.session, shell.clock.now - slot.created), KILL_BOUND)
    return slot, kill


@pytest.mark.parametrize("broken", [False, True], ids=["interrupted", "socket dropped"])
def test_an_abandoned_session_keeps_its_slot_until_the_kill_ends(clock: Clock, broken: bool) -> None:
    """The slot stays counted while the kill is in flight: a borrower waits
    instead of dialing a session beside the one still running; once the
    server let the session go, the waiter gets the right to dial."""
    shell = Shell(make_core(clock, 1, timeout=30.0), clock)
    core = shell.core
    slot, kill = abandon_one(shell, broken)
    assert core._open == 1 and core._killing == 1 and core.get_stats()["killing"] == 1
    assert core.get_stats()["borrowed"] == 0
    waiting = shell.borrow()
    assert waiting is not None and waiting.request[0] == WAIT, "dialed beside a session still running"
    shell.check_books()
    shell.answer(kill, "ok")  # KILL acknowledged, the session gone
    assert slot.state == GONE and core._open == 0 and core._killing == 0
    assert isinstance(waiting.request[1].grant, DialToken)
    stats = core._stats
    assert stats.kills == 1 and stats.kill_failures == 0
    assert stats.closes["closed_broken" if broken else "closed_unread"] == 1
    shell.finish_all()
    assert len(shell.lent) == 1
    shell.check_books()


@pytest.mark.parametrize("kind", ["borrow", "refill"])
def test_a_dial_cut_in_its_set_up_is_killed_in_its_place(clock: Clock, kind: str) -> None:
    """An interrupt cuts a dial after the server made its session (the shell
    leaves the closed connection on the interrupt: its set-up may still run
    there). Its place becomes a KILLING slot instead of being given back, so
    a borrower waits rather than dialing beside it; once the KILL proved the
    session gone, the waiter gets the right to dial. (A dial cut before the
    server made a session gives its place back at once: see
    test_interrupt_at_each_request_leaves_books_exact.)"""
    shell = Shell(make_core(clock, 1, timeout=30.0, pre_create_num=int(kind == "refill")), clock)
    core = shell.core
    dial = shell.borrow() if kind == "borrow" else shell.start("refill", core._refill_plan())
    assert dial is not None and dial.request[0] == DIAL and core._connecting == 1
    shell.answer(dial, "interrupt", 1)
    assert shell.results[-1] == (kind, KeyboardInterrupt)
    (kill,) = [run for run in shell.plans if run.kind == "kill"]
    (slot,) = core.unfinished
    assert slot.state == KILLING and slot.raw.closed and kill.request == (KILL, (slot.raw.session, 0.0), KILL_BOUND)
    assert (core._open, core._killing, core._connecting) == (1, 1, 0)
    assert core._stats.borrows == 0  # the cut borrow is not counted as served
    waiting = shell.borrow()
    assert waiting is not None and waiting.request[0] == WAIT, "dialed beside a session still running"
    shell.check_books()
    shell.answer(kill, "ok")  # KILL acknowledged, the session gone
    assert slot.state == GONE and (core._open, core._killing) == (0, 0)
    assert isinstance(waiting.request[1].grant, DialToken)
    stats = core._stats
    assert (stats.kills, stats.kill_failures, stats.connections_made, stats.closes["closed_broken"]) == (1, 0, 1, 1)
    shell.finish_all()
    assert len(shell.lent) == 1
    shell.check_books()


@pytest.mark.parametrize("answer", ["refused", "unreachable", "still listed"])
def test_a_failed_kill_frees_the_slot_at_its_bound(clock: Clock, answer: str) -> None:
    """A KILL the server refuses is not repeated; one whose side connection
    fails is retried with back-off; either way the slot is held until the
    kill's bound (connect_timeout after the abandon), then freed as a failure."""
    shell = Shell(make_core(clock, 1, timeout=3 * IO_TIMEOUT), clock)
    core = shell.core
    started = clock.now
    slot, kill = abandon_one(shell)
    if answer == "refused":
        shell.answer(kill, "fatal")
        assert kill.request[0] == SLEEP and kill.request[1] == pytest.approx(IO_TIMEOUT)
        assert slot.state == KILLING
        shell.answer(kill, "ok")
    elif answer == "unreachable":
        shell.answer(kill, "fail")
        assert kill.request == (SLEEP, plans.BACKOFF_FIRST, None)
        shell.answer(kill, "ok")
        assert kill.request[0] == KILL and slot.state == KILLING  # tried again
        shell.answer(kill, "fail", flavor=1)  # black-holed this time: the rest of the bound spent
        assert kill not in shell.plans
    else:
        shell.answer(kill, "ok", flavor=2)  # the session was still listed when its time ran out
    assert kill not in shell.plans and slot.state == GONE
    assert clock.now >= started + IO_TIMEOUT - plans.MIN_ATTEMPT
    assert core._stats.kills == 0 and core._stats.kill_failures == 1
    shell.check_books()
    assert len(borrowed(shell, 1)) == 1  # its room was given back


@pytest.mark.parametrize("broken", [False, True], ids=["interrupted", "socket dropped"])
def test_a_killed_session_is_reported_closed_once_its_kill_ended_under_its_reason(
    clock: Clock, broken: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """on_close tells of an abandoned connection when its kill ended (not
    when its socket was closed: the slot is still counted then), under the
    reason it was closed for."""
    closes: List[Tuple[Any, str]] = []

    class Recorder:
        def on_close(self, raw: Any, reason: str) -> None:
            closes.append((raw, reason))

    shell = Shell(make_core(clock, 1, timeout=30.0, events=Recorder()), clock)
    slot, kill = abandon_one(shell, broken)
    assert closes == []
    shell.answer(kill, "ok")
    assert closes == [(slot.raw, "closed_broken" if broken else "closed_unread")]
    assert "not proved gone" not in caplog.text  # the warning is for a kill that failed
    shell.check_books()


def test_a_kill_retries_with_doubling_pauses_and_a_late_refusal_waits_out_the_reach(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """A side connection that fails is tried again after a pause that
    doubles each time; a KILL refused with less than a second of the reach
    bound left still holds the slot until that bound (freeing it sooner
    would let a new session start beside a statement still running)."""
    shell = Shell(make_core(clock, 1, timeout=3 * IO_TIMEOUT), clock)
    core = shell.core
    slot, kill = abandon_one(shell)
    reach_end = slot.kill_by - KILL_WATCH
    pauses = []
    for _ in range(3):
        shell.answer(kill, "fail")
        assert kill.request[0] == SLEEP
        pauses.append(kill.request[1])
        shell.answer(kill, "ok")
        assert kill.request[0] == KILL and slot.state == KILLING
    first = plans.BACKOFF_FIRST
    assert pauses == pytest.approx([first, 2 * first, 4 * first])
    clock.now = reach_end - 0.5
    shell.answer(kill, "fatal")  # refused, half a second of the reach left
    assert kill.request == (SLEEP, pytest.approx(0.5), None) and slot.state == KILLING
    shell.answer(kill, "ok")
    assert kill not in shell.plans and slot.state == GONE and clock.now == pytest.approx(reach_end)
    assert core._stats.kills == 0 and core._stats.kill_failures == 1
    assert f"session {slot.session}, closed in the middle of an answer, was not proved gone" in caplog.text
    shell.check_books()


def abandoned_beside_idle(clock: Clock, idle: int) -> Tuple[Shell, Slot, Running, List[Slot]]:
    """Three connections: ``idle`` of them given back (idle, oldest first),
    the last abandoned mid-answer; its kill suspended at its first KILL."""
    shell = Shell(make_core(clock, 3, timeout=30.0), clock)
    proxies = borrowed(shell, 3)
    parked = []
    for proxy in proxies[:idle]:
        parked.append(proxy._slot)
        assert shell.give_back(proxy) is None  # clean: straight back to idle
    victim = proxies[-1]
    slot = victim._slot
    assert slot is not None
    victim._raw.mid = True
    back = shell.give_back(victim, failed=True)
    assert back is not None and back.request[0] == CLOSE
    shell.answer(back, "ok")
    (kill,) = [run for run in shell.plans if run.kind == "kill"]
    assert kill.request[0] == KILL and len(kill.request[1]) == 2  # a side connection first
    assert slot.state == KILLING
    return shell, slot, kill, parked


@pytest.mark.parametrize("outcome", ["ok", "fail", "interrupt", "interrupt mid-answer"])
def test_a_kill_refused_a_side_connection_goes_over_the_newest_idle_connection(
    clock: Clock, outcome: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The account has no session to spare (1040, 1226): the KILL goes over
    the pool's most recently used idle connection, held meanwhile (no
    borrower gets it), then given back through the return's rules: parked as
    it was after a KILL answered, reset after one that failed, dropped when
    interrupted (its state unknown) -- and killed in turn, its slot counted,
    when the interrupt left it in the middle of the KILL's answer."""
    caplog.set_level("INFO", logger="pymysqlpool")
    shell, slot, kill, parked = abandoned_beside_idle(clock, idle=2)
    core = shell.core
    oldest, newest = parked
    shell.answer(kill, "too many")
    assert kill.request[0] == KILL and kill.request[1] == (slot.session, clock.now - slot.created, newest.raw)
    assert newest.state == HELD and oldest.state == IDLE
    shell.check_books()
    newest.raw.mid = outcome == "interrupt mid-answer"  # the KILL sent, its answer not read
    shell.answer(kill, "interrupt" if newest.raw.mid else outcome)
    if newest.raw.mid:
        assert newest.state == KILLING and newest.raw.closed and core._stats.closes["closed_broken"] == 1
        (second,) = [run for run in shell.plans if run.kind == "kill"]
        assert second.request == (KILL, (newest.session, clock.now - newest.created), KILL_BOUND)
        shell.answer(second, "ok")
        assert newest.state == GONE and core._stats.kills == 1
        assert slot.state == KILLING  # the reconcile frees it after its bound
        shell.reap_kills()
    elif outcome == "ok":
        assert kill not in shell.plans  # no reset: the KILL left the connection clean
        assert newest.state == IDLE and (core._stats.kills, core._stats.kill_failures) == (1, 0)
    elif outcome == "fail":
        assert kill.request[0] == RESET and kill.request[1] is newest.raw  # what the KILL left is unknown
        assert f"could not kill session {slot.session} over an idle connection" in caplog.text
        shell.answer(kill, "ok")
        assert kill not in shell.plans and newest.state == IDLE
        assert (core._stats.kills, core._stats.kill_failures) == (0, 1)
    else:
        assert newest.state == GONE and newest.raw.closed and core._stats.closes["closed_broken"] == 1
        assert slot.state == KILLING  # the reconcile frees it after its bound
        shell.reap_kills()
    assert slot.state == GONE and oldest.state == IDLE
    shell.check_books()


def test_kills_lost_with_their_event_loop_are_renewed_with_a_new_bound(clock: Clock) -> None:
    """The asyncio pool's loop ended with kills in flight: the KILLING slots
    are handed back, each bound reset to a whole kill from now (the shell
    kills them again; close(timeout) waits on the new bound)."""
    shell, slot, kill, _ = abandoned_beside_idle(clock, idle=1)
    core = shell.core
    shell.plans.remove(kill)  # the loop that ran it is gone
    kill.gen.close()  # (as the loop's end does: the slot stays KILLING)
    clock.now += 7.0
    assert slot.state == KILLING and slot.kill_by < clock.now + KILL_BOUND
    assert core._renew_kills() == [slot]
    assert slot.kill_by == clock.now + KILL_BOUND and slot.state == KILLING
    assert core._kills_end() == slot.kill_by + plans.TICK


def test_a_kill_refused_a_side_connection_with_nothing_idle_backs_off(clock: Clock) -> None:
    shell, slot, kill, _ = abandoned_beside_idle(clock, idle=0)
    shell.answer(kill, "too many")
    assert kill.request == (SLEEP, plans.BACKOFF_FIRST, None)  # tried again after a pause
    shell.answer(kill, "ok")
    assert kill.request[0] == KILL and len(kill.request[1]) == 2
    shell.answer(kill, "ok")
    assert slot.state == GONE and shell.core._stats.kills == 1
    shell.check_books()


@pytest.mark.parametrize("where", ["KILL", "SLEEP", "spawn", "no thread"])
def test_an_interrupted_kill_is_freed_once_after_its_bound(clock: Clock, where: str) -> None:
    """An interrupt inside the kill path leaves the slot KILLING: counted,
    never lost. The reconcile frees it once past the bound, counted as one
    failed kill; a killer that ends later changes nothing. A kill that
    cannot be started at all frees the slot at once."""
    shell = Shell(make_core(clock, 2, timeout=30.0), clock)
    core = shell.core
    if where in ("spawn", "no thread"):

        def spawner(plan: Plan) -> bool:
            plan.close()
            if where == "spawn":
                raise KeyboardInterrupt
            return False

        core.spawner = spawner
        (proxy,) = borrowed(shell, 1)
        slot = proxy._slot
        assert slot is not None
        proxy._raw.mid = True
        shell.lent.remove(proxy)
        assert core._give_back(proxy, True) == SLOW
        shell.returns += 1
        core._drv.force_close(slot.raw)  # the return plan's close, then its unbooking:
        if where == "spawn":
            with pytest.raises(KeyboardInterrupt):
                core._unbook(slot, "closed_unread", kill=True)
            shell.unkilled.add(id(slot))
        else:
            core._unbook(slot, "closed_unread", kill=True)
            assert slot.state == GONE and core._stats.kill_failures == 1
            shell.check_books()
            return
    else:
        slot, kill = abandon_one(shell)
        if where == "SLEEP":
            shell.answer(kill, "fail")
            assert kill.request[0] == SLEEP
        shell.answer(kill, "interrupt")
    assert slot.state == KILLING
    shell.check_books()
    seen: Dict[Any, Tuple[Any, float]] = {}
    grace = 2 * IO_TIMEOUT + 1.0
    shell.run_plan("reconcile", core._reconcile_plan(grace, seen))
    assert slot.state == KILLING, "freed before its bound"
    clock.now = slot.kill_by + plans.TICK
    shell.run_plan("reconcile", core._reconcile_plan(grace, seen))
    assert slot.state == GONE and core._killing == 0 and core._held == 0
    shell.run_plan("reconcile", core._reconcile_plan(grace, seen))
    core._killed(slot, True)  # a killer that ends after all
    stats = core._stats
    assert stats.kill_failures == 1 and stats.kills == 0
    assert stats.connections_made == sum(stats.closes.values()) + core._open
    shell.check_books()
    assert len(borrowed(shell, 2)) == 2


@pytest.mark.parametrize(
    ("kill_on_abandon", "mid", "broken"),
    [(False, True, False), (True, False, True)],
    ids=["kill_on_abandon off", "broken, not mid-answer"],
)
def test_a_close_without_kill_frees_the_slot_at_once(
    clock: Clock, kill_on_abandon: bool, mid: bool, broken: bool
) -> None:
    """Only a session left mid-answer is killed, and only with kill_on_abandon:
    otherwise the connection is closed and its slot freed as before."""
    shell = Shell(make_core(clock, 1, kill_on_abandon=kill_on_abandon), clock)
    slot = closed_on_return(shell, mid, broken)
    assert slot.state == GONE and not shell.plans
    assert shell.core._stats.kills == shell.core._stats.kill_failures == 0
    shell.check_books()


def test_the_drivers_kill_rules() -> None:
    """What the real drivers tell the core about a kill: the session id from
    the handshake, a server's refusal (not retried) from a client error
    (retried), 1094 as "gone already", and a side connection without the
    borrowers' schema, set-up statement or read/write timeouts."""
    import pymysql

    from pymysqlpool import _driver

    class Handshaken:
        server_thread_id = (4711,)

    assert _driver.session_id(Handshaken()) == 4711
    assert _driver.session_id(object()) == 0  # a connection_factory's object: never killed
    refused = pymysql.err.InternalError(1095, "You are not owner of thread 4711")
    unreachable = pymysql.err.OperationalError(2003, "Can't connect to MySQL server")
    gone = pymysql.err.InternalError(1094, "Unknown thread id: 4711")
    assert _driver.kill_refused(refused) and not _driver.kill_refused(unreachable)
    assert not _driver.kill_refused(TimeoutError()) and not _driver.kill_refused(ValueError("x"))
    assert _driver.killed_already(gone) and not _driver.killed_already(refused)
    kwargs = {
        "host": "h",
        "user": "u",
        "password": "p",
        "database": "d",
        "init_command": "SET x=1",
        "read_timeout": 0.05,
        "write_timeout": 0.05,
        "connect_timeout": 3,
    }
    assert _driver.kill_kwargs(kwargs) == {"host": "h", "user": "u", "password": "p", "connect_timeout": 3}
    assert _driver.kill_kwargs({"db": "d", "port": 1}) == {"port": 1}
    # A KILL of an id is only sent to the server instance that gave it out.
    assert _driver.restarted_since(5, 40, "3600", 10.0)  # ids restarted from 1: a new instance
    assert _driver.restarted_since(50, 40, "3", 10.0)  # up 3 s, the session is 10 s old
    assert not _driver.restarted_since(50, 40, "3600", 10.0)
    assert _driver.restarted_since(50, 40, "9", 10.0)  # up less than 10 s: after the session opened
    assert not _driver.restarted_since(50, 40, "10", 10.0)  # up 10.x s: no proof
    assert not _driver.restarted_since(0, 40, None, 10.0)  # nothing known: kill

    # A statement cut by the client (a read timeout) is left running; one the
    # server hung up on (end of stream, reset) is not: no KILL for it.
    class Raw:
        _exchanging = True
        _result = None

    def lost(context: Optional[BaseException]) -> Any:
        raw = Raw()
        exc = pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query")
        exc.__context__ = context  # what PyMySQL raised it from (aiomysql: __cause__)
        _driver.answer_ended(raw, exc, False)
        return raw

    assert _driver.left_running(lost(TimeoutError("timed out")))
    assert not _driver.left_running(lost(None))  # end of stream
    assert not _driver.left_running(lost(ConnectionResetError()))


def test_a_killing_slot_is_neither_a_leak_nor_late_nor_the_forked_childs(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slot whose session is being killed was given back: leak_timeout does
    not report it, close(timeout) does not count it among the borrowed ones
    it cut, and a forked child does not inherit it."""
    import dataclasses

    shell = Shell(make_core(clock, 2, timeout=30.0), clock)
    core = shell.core
    core._config = dataclasses.replace(core._config, leak_timeout=1.0)
    for proxy in borrowed(shell, 1):
        shell.give_back(proxy)  # parked: last used now
    clock.now += 0.2  # lent again within the validation window, later than it was last used
    slot, _kill = abandon_one(shell)
    assert slot.borrowed_at > slot.last_used
    clock.now += 10.0
    core._report_leaks(clock.now)
    assert core._stats.leaks_detected == 0
    assert core._shut() is not None
    assert core._interrupt_late(0.0) == 0 and not slot.raw.interrupted
    monkeypatch.setattr(FakeDriver, "abandon", staticmethod(lambda raw: None))
    core._after_fork(NoLock())
    stats = core.get_stats()
    assert stats["killing"] == 0 and stats["open"] == 0 and stats["borrowed"] == 0, stats


@pytest.mark.parametrize("kind", ["validation ping", "reset on return", "check()", "keep-alive ping"])
def test_a_pool_exchange_cut_mid_answer_is_killed_in_its_place(clock: Clock, kind: str) -> None:
    """The pool's own exchange -- a borrow's validation ping, a return's reset
    (a long ROLLBACK, a session reset re-running init_command) -- interrupted
    after its command was sent: the server runs it on, so the slot is not
    freed but killed in place, and a borrower waits rather than dialing a
    session beside it (before: dropped and freed at once)."""
    shell = Shell(make_core(clock, 1, timeout=30.0, keepalive=3.0), clock)
    core = shell.core
    (proxy,) = borrowed(shell, 1)
    slot = proxy._slot
    assert slot is not None
    op = {"reset on return": RESET, "keep-alive ping": PING}.get(kind, CHECK)
    if kind == "reset on return":
        proxy._raw.dirty = True  # a transaction open: the return rolls back
        run = shell.give_back(proxy)
    else:
        shell.give_back(proxy)
        clock.now += 1.0  # past the validation window: the next borrow pings
        if kind == "validation ping":
            run = shell.borrow()
        elif kind == "check()":
            run = shell.start("check", core._check_plan())
        else:
            clock.now += 3.0  # past the keep-alive interval too
            run = shell.start("round", core._round_plan(shell.seen))
    assert run is not None and run.request[0] == op and run.request[1] is slot.raw
    slot.raw.mid = True  # sent, its answer not read (the real driver's mark)
    shell.answer(run, "interrupt")
    assert shell.results[-1] == (run.kind, KeyboardInterrupt)
    assert slot.state == KILLING and slot.raw.closed
    (kill,) = [run for run in shell.plans if run.kind == "kill"]
    assert kill.request[0] == KILL and kill.request[1][0] == slot.raw.session
    waiting = shell.borrow()
    assert waiting is not None and waiting.request[0] == WAIT, "dialed beside a session still running"
    shell.check_books()
    shell.answer(kill, "ok")
    assert slot.state == GONE and isinstance(waiting.request[1].grant, DialToken)
    assert core._stats.kills == 1 and sum(core._stats.closes.values()) == 1, core._stats.closes
    shell.finish_all()
    shell.check_books()
