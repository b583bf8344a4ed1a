"""The six measurements. Each returns plain numbers; targets and tables come later.

Scenarios 1-3 keep every pool open at once and interleave their rounds, so a
slow patch on the machine (another job, a server flush) hits every subject
alike instead of one of them.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any

import pymysql

from benchmarks.common import Server, Settings, coefficient_of_variation, median, percentile
from benchmarks.fake import FakeConnection, make_fake_pool
from benchmarks.peers import Handle, Subject

Say = Callable[[str], None]


@dataclass
class Context:
    server: Server
    pool_kwargs: dict[str, Any]  # what every pool (and raw PyMySQL) connects with
    settings: Settings
    subjects: list[Subject]
    conn_counter: ConnCounter
    say: Say


# --- server connection counting -------------------------------------------------


@dataclass(frozen=True)
class ConnCounter:
    """Counts the server connections that the pools under test hold.

    Preferred: the pools log in as a user of their own and the sampler counts
    that user's PROCESSLIST rows, which ignores other clients of the server.
    Fallback (no CREATE USER right): Threads_connected, which does not.
    """

    user: str | None

    @property
    def method(self) -> str:
        if self.user is not None:
            return f"PROCESSLIST rows of the dedicated user `{self.user}`"
        return "global Threads_connected minus its value before the pool existed"

    def count(self, cursor: Any) -> int:
        if self.user is not None:
            cursor.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s",
                (self.user,),
            )
        else:
            cursor.execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
        row = cursor.fetchone()
        return int(row[-1])


def admin_connect(server: Server) -> Any:
    return pymysql.connect(**server.kwargs())


# --- shared plumbing ---------------------------------------------------------------


@contextlib.contextmanager
def open_handles(
    subjects: list[Subject], kwargs: dict[str, Any], maxsize: int, failed: dict[str, str]
) -> Iterator[dict[str, Handle]]:
    """Open every available subject; a setup failure marks only that one n/a."""
    handles: dict[str, Handle] = {}
    try:
        for subject in subjects:
            if subject.factory is None:
                continue
            try:
                handles[subject.key] = subject.factory(kwargs, maxsize)
            except Exception as exc:
                failed[subject.key] = f"setup failed: {exc!r}"
        yield handles
    finally:
        for handle in handles.values():
            with contextlib.suppress(Exception):
                handle.close()


def _select_one(conn: Any) -> None:
    cur = conn.cursor()
    cur.execute("SELECT 1")
    cur.fetchall()
    cur.close()


def _overhead_loop(handle: Handle, n: int) -> int:
    """n borrow+return cycles of an untouched connection; returns elapsed ns."""
    if handle.ctx is not None:
        cm = handle.ctx
        t0 = perf_counter_ns()
        for _ in range(n):
            with cm():
                pass
        return perf_counter_ns() - t0
    get, put = handle.borrow, handle.release
    t0 = perf_counter_ns()
    for _ in range(n):
        put(get())
    return perf_counter_ns() - t0


def _query_loop(handle: Handle, n: int) -> int:
    """n cycles of borrow + SELECT 1 + fetch + return; returns elapsed ns."""
    if handle.direct is not None:
        conn = handle.direct
        t0 = perf_counter_ns()
        for _ in range(n):
            cur = conn.cursor()
            cur.execute("SELECT 1")
            cur.fetchall()
            cur.close()
        return perf_counter_ns() - t0
    if handle.ctx is not None:
        cm = handle.ctx
        t0 = perf_counter_ns()
        for _ in range(n):
            with cm() as conn:
                cur = conn.cursor()
                cur.execute("SELECT 1")
                cur.fetchall()
                cur.close()
        return perf_counter_ns() - t0
    get, put = handle.borrow, handle.release
    t0 = perf_counter_ns()
    for _ in range(n):
        conn = get()
        cur = conn.cursor()
        cur.execute("SELECT 1")
        cur.fetchall()
        cur.close()
        put(conn)
    return perf_counter_ns() - t0


# --- scenarios 1 and 2: timing loops ----------------------------------------------------


@dataclass
class TimingResult:
    """Microseconds per cycle, one value per round, per subject key."""

    cycles: int
    rounds: int
    samples: dict[str, list[float]] = field(default_factory=dict)
    # Raw SELECT 1 on the very session the pool lends, timed around each round.
    floors: dict[str, list[float]] = field(default_factory=dict)
    # pool/raw time of each adjacent pair of blocks, over all rounds.
    block_ratios: dict[str, list[float]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    maxsize: int = 0

    def median_us(self, key: str) -> float | None:
        values = self.samples.get(key)
        if key in self.failed or not values:
            return None
        return median(values)

    def ratio(self, key: str, ref: str) -> float | None:
        """Median over rounds of key/ref measured in the same round (paired).

        Pairing cancels slow patches that hit a whole round, which a ratio of
        two medians would not.
        """
        a, b = self.samples.get(key), self.samples.get(ref)
        if key in self.failed or ref in self.failed or not a or not b or len(a) != len(b):
            return None
        return median([x / y for x, y in zip(a, b)])

    def floor_us(self, key: str) -> float | None:
        values = self.floors.get(key)
        return median(values) if values and key not in self.failed else None

    def floor_ratio(self, key: str) -> float | None:
        """Median over adjacent block pairs of (pool cycles / raw SELECT 1, same session).

        A burst of outside load spoils a pair or two; the median shrugs it off.
        """
        ratios = self.block_ratios.get(key)
        return median(ratios) if ratios and key not in self.failed else None


def _raw_select_loop(session: Any, n: int) -> int:
    """n SELECT 1 on a bare PyMySQL connection, with PyMySQL's own cursor class."""
    make_cursor = pymysql.connections.Connection.cursor  # skips any subclass override
    t0 = perf_counter_ns()
    for _ in range(n):
        cur = make_cursor(session)
        cur.execute("SELECT 1")
        cur.fetchall()
        cur.close()
    return perf_counter_ns() - t0


FLOOR_BLOCK = 20  # cycles per block (~1-2 ms): drift between neighbours stays small


def _paired_round(handle: Handle, cycles: int, ratios: list[float]) -> tuple[int, int]:
    """`cycles` pool query cycles and as many raw SELECT 1 on the same session.

    Blocks alternate (and swap order each time) so load changes during the
    round land on both. The raw blocks run while the connection is borrowed,
    the fair way to use it bare; that borrow/return is outside their timing.
    Appends each pair's pool/raw ratio to `ratios`; returns (pool ns, raw ns).
    """
    pool_ns = floor_ns = 0
    done = 0
    block_no = 0
    while done < cycles:
        n = min(FLOOR_BLOCK, cycles - done)
        if block_no % 2:
            pool_block = _query_loop(handle, n)
        conn = handle.borrow()
        try:
            floor_block = _raw_select_loop(handle.session(conn), n)
        finally:
            handle.release(conn)
        if not block_no % 2:
            pool_block = _query_loop(handle, n)
        ratios.append(pool_block / floor_block)
        pool_ns += pool_block
        floor_ns += floor_block
        done += n
        block_no += 1
    return pool_ns, floor_ns


def _run_timing(
    ctx: Context,
    loop: Callable[[Handle, int], int],
    cycles: int,
    rounds: int,
    maxsize: int,
    with_floor: bool = False,
) -> TimingResult:
    """Interleaved rounds over every subject; optionally a same-session floor.

    With ``with_floor`` each round alternates short blocks of pool cycles with
    blocks of raw SELECT 1 on the pool's own server session (maxsize=1, so it
    is always the same one). Latency of a loopback session drifts a lot with
    machine load and with where the scheduler puts the server thread, so a
    ratio is only trustworthy against the same session at the same moment.
    """
    s = ctx.settings
    result = TimingResult(cycles=cycles, rounds=rounds, maxsize=maxsize)
    with open_handles(ctx.subjects, ctx.pool_kwargs, maxsize, result.failed) as handles:
        active = dict(handles)
        for key, handle in list(active.items()):
            try:
                loop(handle, s.warmup_cycles)
                if with_floor:
                    _paired_round(handle, s.warmup_cycles, [])
            except Exception as exc:
                result.failed[key] = f"warm-up failed: {exc!r}"
                del active[key]
        for r in range(rounds):
            ctx.say(f"round {r + 1}/{rounds}")
            order = list(active.items())
            shift = r % len(order) if order else 0
            # Rotate the starting subject each round so no pool always runs first.
            for key, handle in order[shift:] + order[:shift]:
                gc.collect()
                try:
                    if with_floor:
                        ratios = result.block_ratios.setdefault(key, [])
                        ns, floor_ns = _paired_round(handle, cycles, ratios)
                        result.floors.setdefault(key, []).append(floor_ns / cycles / 1000.0)
                    else:
                        ns = loop(handle, cycles)
                except Exception as exc:
                    result.failed[key] = f"failed in round {r + 1}: {exc!r}"
                    del active[key]
                    continue
                result.samples.setdefault(key, []).append(ns / cycles / 1000.0)
    return result


def run_overhead(ctx: Context) -> TimingResult:
    s = ctx.settings
    return _run_timing(ctx, _overhead_loop, s.overhead_cycles, s.rounds, s.small_maxsize)


def run_query(ctx: Context) -> TimingResult:
    s = ctx.settings
    # maxsize=1: every cycle of a pool runs on one server session, the floor's.
    return _run_timing(ctx, _query_loop, s.query_cycles, s.query_rounds, 1, with_floor=True)


# --- scenario 3: server round trips per cycle -----------------------------------------

# Questions counts every client statement but not COM_PING, which lands in
# Com_admin_commands instead; their sum is the number of commands sent.
COUNTERS = ("Questions", "Com_admin_commands", "Com_commit", "Com_rollback", "Connections")
# No pool sends these, so in a window of K cycles they must read exactly what
# the borrower sent (K SELECT 1, K BEGIN on dirty cycles, nothing else); any
# other value means another client of the server was busy in that window.
CONTROLS = ("Com_select", "Com_begin", "Com_insert", "Com_update", "Com_delete", "Com_create_table")
_ALL = COUNTERS + CONTROLS


def read_status(cursor: Any) -> dict[str, int]:
    names = ", ".join(f"'{name}'" for name in _ALL)
    cursor.execute(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})")
    values = {str(name): int(value) for name, value in cursor.fetchall()}
    return {name: values.get(name, 0) for name in _ALL}


def _diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in _ALL}


@dataclass
class TripRow:
    key: str
    kind: str  # "clean" or "dirty"
    cycles: int
    # Counter increase the pool caused over `cycles` cycles: the minimum over the
    # windows no other client touched (over all windows if none was quiet).
    added: dict[str, int] | None
    quiet: int = 0  # windows with no foreign traffic
    windows: int = 0  # windows measured
    error: str | None = None

    def per_cycle(self, name: str) -> float | None:
        return None if self.added is None else self.added[name] / self.cycles

    @property
    def round_trips(self) -> float | None:
        if self.added is None:
            return None
        return (self.added["Questions"] + self.added["Com_admin_commands"]) / self.cycles


@dataclass
class TripResult:
    cycles: int
    repeats: int
    max_windows: int
    admin_cost: dict[str, int]
    rows: list[TripRow]


def _clean_cycle(handle: Handle) -> None:
    if handle.ctx is not None:
        with handle.ctx() as conn:
            _select_one(conn)
        return
    conn = handle.borrow()
    _select_one(conn)
    handle.release(conn)


def _dirty_cycle(handle: Handle) -> None:
    """Borrower opens a transaction and hands the connection back without ending it."""
    if handle.ctx is not None:
        with handle.ctx() as conn:
            conn.begin()
            _select_one(conn)
        return
    conn = handle.borrow()
    conn.begin()
    _select_one(conn)
    handle.release(conn)


def _measure_windows(
    cur: Any, handle: Handle, cycle: Callable[[Handle], None], k: int, dirty: bool,
    admin_cost: dict[str, int], wanted: int, max_windows: int,
) -> TripRow:  # fmt: skip
    expected = {name: 0 for name in CONTROLS}
    expected["Com_select"] = k
    expected["Com_begin"] = k if dirty else 0
    quiet: list[dict[str, int]] = []
    every: list[dict[str, int]] = []
    while len(quiet) < wanted and len(every) < max_windows:
        before = read_status(cur)
        for _ in range(k):
            cycle(handle)
        raw = _diff(read_status(cur), before)
        delta = {name: raw[name] - admin_cost[name] for name in _ALL}
        delta["Questions"] -= k * (2 if dirty else 1)  # the borrower's own statements
        every.append(delta)
        if all(delta[name] == expected[name] for name in CONTROLS):
            quiet.append(delta)
    pool = quiet or every
    added = {name: min(d[name] for d in pool) for name in COUNTERS}
    return TripRow("", "dirty" if dirty else "clean", k, added, len(quiet), len(every))


def _admin_cost(cur: Any, wanted: int = 5, tries: int = 60) -> dict[str, int]:
    """What one SHOW GLOBAL STATUS adds to the counters (normally 1 Question).

    Measured on back-to-back reads; pairs with foreign traffic (any control
    counter moved) are skipped, and the minimum of the rest is kept.
    """
    quiet: list[dict[str, int]] = []
    every: list[dict[str, int]] = []
    while len(quiet) < wanted and len(every) < tries:
        first = read_status(cur)
        delta = _diff(read_status(cur), first)
        every.append(delta)
        if not any(delta[name] for name in CONTROLS):
            quiet.append(delta)
    pool = quiet or every
    return {name: min(d[name] for d in pool) for name in _ALL}


def run_round_trips(ctx: Context) -> TripResult:
    """Global status counters around K cycles, read from a separate admin connection.

    The admin's own SHOW (calibrated, normally 1 Question) and the statements
    the borrower itself sent (SELECT 1, plus BEGIN on dirty cycles) are
    subtracted. Windows in which another client was active (control counters
    off their expected values) are set aside; the minimum over the quiet ones
    is the pool's own traffic.
    """
    s = ctx.settings
    k = s.trip_cycles
    max_windows = s.trip_repeats * 8
    admin = admin_connect(ctx.server)
    rows: list[TripRow] = []
    failed: dict[str, str] = {}
    try:
        cur = admin.cursor()
        admin_cost = _admin_cost(cur)
        with open_handles(ctx.subjects, ctx.pool_kwargs, s.small_maxsize, failed) as handles:
            for subject in ctx.subjects:
                for kind, cycle in (("clean", _clean_cycle), ("dirty", _dirty_cycle)):
                    handle = handles.get(subject.key)
                    if handle is None:
                        why = failed.get(subject.key) or subject.missing or "unavailable"
                        rows.append(TripRow(subject.key, kind, k, None, error=why))
                        continue
                    if kind == "dirty" and not subject.is_pool:
                        rows.append(TripRow(subject.key, kind, k, None, error="no pool"))
                        continue
                    ctx.say(f"{subject.label}: {kind}")
                    try:
                        for _ in range(10):
                            cycle(handle)
                        row = _measure_windows(
                            cur, handle, cycle, k, kind == "dirty", admin_cost,
                            s.trip_repeats, max_windows,
                        )  # fmt: skip
                    except Exception as exc:
                        rows.append(TripRow(subject.key, kind, k, None, error=repr(exc)))
                        continue
                    row.key = subject.key
                    rows.append(row)
    finally:
        admin.close()
    return TripResult(k, s.trip_repeats, max_windows, admin_cost, rows)


# --- scenario 4: contention ------------------------------------------------------------


@dataclass
class ContentionRow:
    key: str
    threads: int
    maxsize: int
    error: str | None = None  # whole row n/a
    cycles: int = 0
    errors: int = 0
    error_sample: str | None = None
    elapsed_s: float = 0.0
    wait_p50_ms: float | None = None
    wait_p99_ms: float | None = None
    wait_max_ms: float | None = None
    per_thread: list[int] = field(default_factory=list)
    server_conns: int | None = None
    stuck_threads: int = 0
    pool_stats: dict[str, Any] | None = None
    runs: int = 0
    waits_ns: list[int] = field(default_factory=list, repr=False)  # every borrow's wait
    run_cvs: list[float] = field(default_factory=list)  # fairness of each run

    def absorb(self, other: ContentionRow) -> None:
        """Add another run of the same subject and configuration to this row."""
        if other.error is not None or self.error is not None:
            self.error = self.error or other.error
            return
        self.runs += other.runs
        self.cycles += other.cycles
        self.errors += other.errors
        self.error_sample = self.error_sample or other.error_sample
        self.elapsed_s += other.elapsed_s
        self.run_cvs += other.run_cvs
        self.server_conns = max(self.server_conns or 0, other.server_conns or 0)
        self.stuck_threads += other.stuck_threads
        if other.pool_stats is not None:
            merged = dict(self.pool_stats or {})
            for name, value in other.pool_stats.items():
                if isinstance(value, (int, float)) and isinstance(merged.get(name), (int, float)):
                    merged[name] = merged[name] + value
                else:
                    merged[name] = value
            self.pool_stats = merged
        self.waits_ns += other.waits_ns
        self.summarize_waits()

    def summarize_waits(self) -> None:
        waits = sorted(self.waits_ns)
        self.waits_ns = waits
        if waits:
            self.wait_p50_ms = percentile(waits, 50) / 1e6
            self.wait_p99_ms = percentile(waits, 99) / 1e6
            self.wait_max_ms = waits[-1] / 1e6

    @property
    def throughput(self) -> float | None:
        if self.error is not None or self.elapsed_s <= 0:
            return None
        return self.cycles / self.elapsed_s

    @property
    def fairness_cv(self) -> float | None:
        """Mean over runs of the per-run CV (summing runs first would smooth it)."""
        if self.error is not None or not self.run_cvs:
            return None
        return statistics.fmean(self.run_cvs)


@dataclass
class _Shared:
    deadline_ns: int = 0
    start_ns: int = 0
    error_sample: str | None = None


def _contention_worker(
    handle: Handle,
    barrier: threading.Barrier,
    shared: _Shared,
    max_cycles: int,
    waits: list[int],
    tallies: list[tuple[int, int]],
    index: int,
) -> None:
    get, put, cm = handle.borrow, handle.release, handle.ctx
    done = errors = 0
    barrier.wait()
    deadline = shared.deadline_ns
    # Bounded both ways: by the shared deadline and by a cycle count.
    while done + errors < max_cycles and perf_counter_ns() < deadline:
        t0 = perf_counter_ns()
        try:
            if cm is not None:
                with cm() as conn:
                    waits.append(perf_counter_ns() - t0)
                    _select_one(conn)
            else:
                conn = get()
                waits.append(perf_counter_ns() - t0)
                try:
                    _select_one(conn)
                finally:
                    put(conn)
        except Exception as exc:
            errors += 1
            if shared.error_sample is None:
                shared.error_sample = f"{type(exc).__name__}: {exc}"
            continue
        done += 1
    tallies[index] = (done, errors)


def _sampler(ctx: Context, baseline: int, stop: threading.Event, peak: list[int]) -> None:
    conn = admin_connect(ctx.server)
    try:
        cur = conn.cursor()
        while not stop.is_set():
            peak[0] = max(peak[0], ctx.conn_counter.count(cur) - baseline)
            stop.wait(0.02)
        peak[0] = max(peak[0], ctx.conn_counter.count(cur) - baseline)
    finally:
        conn.close()


def _settled_count(ctx: Context, limit_s: float = 3.0) -> int:
    """Server connections before a pool starts, once the last pool's have gone.

    A closed pool's sessions leave the PROCESSLIST a little after COM_QUIT;
    counting them in the baseline would understate the next pool's peak.
    """
    admin = admin_connect(ctx.server)
    try:
        cur = admin.cursor()
        count = ctx.conn_counter.count(cur)
        give_up = time.monotonic() + limit_s
        while count > 0 and ctx.conn_counter.user is not None and time.monotonic() < give_up:
            time.sleep(0.02)
            count = ctx.conn_counter.count(cur)
        return count
    finally:
        admin.close()


def _contend(ctx: Context, subject: Subject, threads: int, maxsize: int) -> ContentionRow:
    row = ContentionRow(subject.key, threads, maxsize)
    if not subject.is_pool:
        row.error = "no pool"
        return row
    if subject.factory is None:
        row.error = subject.missing or "unavailable"
        return row
    s = ctx.settings
    baseline = _settled_count(ctx)
    try:
        handle = subject.factory(ctx.pool_kwargs, maxsize)
    except Exception as exc:
        row.error = f"setup failed: {exc!r}"
        return row
    try:
        for _ in range(s.warmup_cycles):
            _clean_cycle(handle)
        gc.collect()
        shared = _Shared()
        duration_ns = int(s.duration_s * 1e9)

        def start() -> None:  # runs once, before any worker is released
            shared.start_ns = perf_counter_ns()
            shared.deadline_ns = shared.start_ns + duration_ns

        barrier = threading.Barrier(threads, action=start)
        waits: list[list[int]] = [[] for _ in range(threads)]
        tallies = [(0, 0)] * threads  # (completed cycles, errors) per thread
        workers = [
            threading.Thread(
                target=_contention_worker,
                args=(handle, barrier, shared, s.max_cycles_per_thread, waits[i], tallies, i),
                daemon=True,
            )
            for i in range(threads)
        ]
        stop = threading.Event()
        peak = [0]
        sampler = threading.Thread(target=_sampler, args=(ctx, baseline, stop, peak), daemon=True)
        sampler.start()
        for worker in workers:
            worker.start()
        # Workers stop at the deadline; a borrow already waiting may take a bit longer.
        join_until = time.monotonic() + s.duration_s + 60.0
        for worker in workers:
            worker.join(max(0.0, join_until - time.monotonic()))
        end_ns = perf_counter_ns()
        stop.set()
        sampler.join(10.0)
        row.stuck_threads = sum(worker.is_alive() for worker in workers)
        row.elapsed_s = (end_ns - shared.start_ns) / 1e9
        row.per_thread = [done for done, _ in tallies]
        row.cycles = sum(row.per_thread)
        row.errors = sum(errors for _, errors in tallies)
        row.error_sample = shared.error_sample
        row.runs = 1
        row.run_cvs = [coefficient_of_variation(row.per_thread)]
        row.waits_ns = [w for per in waits for w in per]
        row.summarize_waits()
        row.server_conns = peak[0]
        if handle.stats is not None:
            with contextlib.suppress(Exception):
                row.pool_stats = dict(handle.stats())
    finally:
        with contextlib.suppress(Exception):
            handle.close()
    return row


@dataclass
class ContentionResult:
    duration_s: float
    runs: int
    method: str
    rows: list[ContentionRow]


def run_contention(ctx: Context) -> ContentionResult:
    """Each configuration runs every pool `contention_runs` times, the order
    reversed on every pass so that a noisy stretch of the machine does not
    always land on the same pools; the runs of a pool are added together."""
    s = ctx.settings
    rows = []
    for threads, maxsize in s.contention:
        merged: dict[str, ContentionRow] = {}
        for run in range(s.contention_runs):
            order = ctx.subjects if run % 2 == 0 else list(reversed(ctx.subjects))
            for subject in order:
                if subject.factory is not None and subject.is_pool:
                    ctx.say(f"{threads} threads / maxsize {maxsize}, run {run + 1}: {subject.label}")
                row = _contend(ctx, subject, threads, maxsize)
                if subject.key in merged:
                    merged[subject.key].absorb(row)
                else:
                    merged[subject.key] = row
        for row in merged.values():
            row.waits_ns = []  # summarized; no need to keep them
        rows += [merged[subject.key] for subject in ctx.subjects]
    return ContentionResult(s.duration_s, s.contention_runs, ctx.conn_counter.method, rows)


# --- scenario 5: bookkeeping cost with many idle connections (fake driver) ----------


@dataclass
class BookkeepingResult:
    cycles: int
    rounds: int
    us: dict[int, float]  # idle connections -> median µs per borrow+return
    error: str | None = None


def run_bookkeeping(ctx: Context) -> BookkeepingResult:
    s = ctx.settings
    result = BookkeepingResult(s.fake_cycles, s.rounds, {})
    pools: dict[int, Any] = {}
    try:
        for k in s.fake_sizes:
            pools[k] = make_fake_pool(k)
        handles = {k: Handle(p.get_conn, p.release, p.close) for k, p in pools.items()}
        samples: dict[int, list[float]] = {k: [] for k in handles}
        for handle in handles.values():
            _overhead_loop(handle, s.warmup_cycles)
        for r in range(s.rounds):
            ctx.say(f"round {r + 1}/{s.rounds}")
            for k, handle in handles.items():
                gc.collect()
                samples[k].append(_overhead_loop(handle, s.fake_cycles) / s.fake_cycles / 1000)
        result.us = {k: median(v) for k, v in samples.items()}
    except Exception as exc:  # TypeError: the fake hook is not wired to the final API
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        for pool in pools.values():
            with contextlib.suppress(Exception):
                pool.close()
    return result


# --- scenario 6: memory per connection (fake driver) ------------------------------------


@dataclass
class MemoryResult:
    fake_bytes: float  # one FakeConnection, which is not the pool's cost
    pool_bytes: dict[int, float]  # k -> traced bytes of the pool minus its k fakes
    error: str | None = None

    @property
    def marginal(self) -> float | None:
        """Bytes per extra connection: slope between the smallest and largest k."""
        if self.error is not None or len(self.pool_bytes) < 2:
            return None
        lo, hi = min(self.pool_bytes), max(self.pool_bytes)
        return (self.pool_bytes[hi] - self.pool_bytes[lo]) / (hi - lo)

    @property
    def fixed(self) -> float | None:
        slope = self.marginal
        if slope is None:
            return None
        lo = min(self.pool_bytes)
        return self.pool_bytes[lo] - slope * lo


def _traced(build: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes still allocated after build() returns, and what it built."""
    gc.collect()
    before = tracemalloc.take_snapshot()
    built = build()
    gc.collect()
    after = tracemalloc.take_snapshot()
    keep = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = after.filter_traces(keep).compare_to(before.filter_traces(keep), "filename")
    return sum(stat.size_diff for stat in stats), built


def run_memory(ctx: Context) -> MemoryResult:
    result = MemoryResult(0.0, {})
    sizes = ctx.settings.fake_sizes
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        n = max(sizes)
        size, fakes = _traced(lambda: [FakeConnection() for _ in range(n)])
        result.fake_bytes = (size - sys.getsizeof(fakes)) / n
        del fakes
        make_fake_pool(1).close()  # first call pays one-off imports and caches
        for k in sizes:
            ctx.say(f"{k} fake connections")
            size, pool = _traced(functools.partial(make_fake_pool, k))
            result.pool_bytes[k] = size - k * result.fake_bytes
            pool.close()
            del pool
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return result
