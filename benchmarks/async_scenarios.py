"""Scenario `async`: asyncio pools and drivers, one event loop, the same server.

Subjects: pymysqlpool's AsyncConnectionPool (per driver it supports), aiomysql's
and asyncmy's own pools, SQLAlchemy's async engine over aiomysql (reset on
return: rollback, and None) and the raw drivers (no pool) as floors. A subject
whose package is missing, or whose pool cannot be built, becomes an n/a row
with the reason; the run goes on.

Three measurements, like the thread scenarios 1, 2 and 4:

- overhead: acquire + release of an untouched connection, µs per cycle;
- query cycle: acquire + SELECT 1 + fetch + release on maxsize=1, paired in
  short blocks with raw SELECT 1 through the same driver on the same session;
- contention: T tasks on maxsize=M, each looping acquire + SELECT 1 + release
  until a shared deadline: throughput, errors, waits, fairness and the peak of
  server connections (sampled from a thread through PyMySQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import importlib.metadata
import inspect
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any

from benchmarks.common import CONTENTION_COLUMNS, NA, Check, Table, coefficient_of_variation, fmt, median
from benchmarks.scenarios import FLOOR_BLOCK, ContentionRow, Context, _sampler, _settled_count

# --- subjects ----------------------------------------------------------------------


async def _nothing(*_args: Any) -> Any:
    return None


@dataclass
class AHandle:
    """A live async pool as the scenarios see it."""

    acquire: Callable[[], Awaitable[Any]]
    release: Callable[[Any], Awaitable[Any]]
    close: Callable[[], Awaitable[None]]
    # When set, cycles use ``async with ctx() as conn`` instead of acquire/release.
    ctx: Callable[[], contextlib.AbstractAsyncContextManager[Any]] | None = None
    # SELECT 1 + fetch on what acquire()/ctx() hands out.
    query: Callable[[Any], Awaitable[None]] = _nothing
    # Borrowed object -> the driver connection (server session) under it.
    session: Callable[[Any], Awaitable[Any]] = _nothing
    # Raw drivers only: the connection itself.
    direct: Any = None
    stats: Callable[[], dict[str, Any]] | None = None


AFactory = Callable[[dict[str, Any], int], Awaitable[AHandle]]


@dataclass(frozen=True)
class ASubject:
    key: str
    label: str
    version: str
    factory: AFactory | None
    missing: str | None = None
    ours: bool = False
    is_pool: bool = True
    resets: bool = False  # puts every returned connection back to a clean state with a round trip
    driver: str = ""


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def driver_kwargs(driver: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """PyMySQL-style keyword arguments (database=...) for one async driver."""
    out = dict(kwargs)
    database = out.pop("database", None)
    if driver == "aiomysql":
        out["db"] = database
    else:
        out["database"] = database
    return out


async def driver_select(conn: Any) -> None:
    """SELECT 1 + fetch through a driver connection (or anything with its cursor())."""
    async with conn.cursor() as cur:
        await cur.execute("SELECT 1")
        await cur.fetchall()


async def _connect(driver: str, kwargs: dict[str, Any]) -> Any:
    module = importlib.import_module(driver)
    return await module.connect(**driver_kwargs(driver, kwargs))


def _raw_factory(driver: str) -> AFactory:
    async def factory(kwargs: dict[str, Any], maxsize: int) -> AHandle:
        conn = await _connect(driver, kwargs)

        async def acquire() -> Any:
            return conn

        async def session(c: Any) -> Any:
            return c

        async def close() -> None:
            conn.close()

        return AHandle(acquire, _nothing, close, query=driver_select, session=session, direct=conn)

    return factory


async def _prime(handle: AHandle, maxsize: int) -> None:
    """Hold `maxsize` connections at once, then give them back: lazy pools fill up."""
    if handle.ctx is not None:
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(maxsize):
                await stack.enter_async_context(handle.ctx())
        return
    held = [await handle.acquire() for _ in range(maxsize)]
    for conn in held:
        await handle.release(conn)


def _driver_pool_factory(driver: str) -> AFactory:
    """aiomysql's or asyncmy's own Pool, used the documented way: async with pool.acquire()."""

    async def factory(kwargs: dict[str, Any], maxsize: int) -> AHandle:
        module = importlib.import_module(driver)
        pool = await module.create_pool(minsize=maxsize, maxsize=maxsize, **driver_kwargs(driver, kwargs))

        async def acquire() -> Any:
            return await pool.acquire()

        async def release(conn: Any) -> None:
            await pool.release(conn)

        async def session(conn: Any) -> Any:
            return conn

        async def close() -> None:
            pool.close()
            await pool.wait_closed()

        handle = AHandle(acquire, release, close, ctx=pool.acquire, query=driver_select, session=session)
        await _prime(handle, maxsize)
        return handle

    return factory


def _sqlalchemy_factory(reset_on_return: str | None) -> AFactory:
    """SQLAlchemy's async engine over aiomysql: async with engine.connect(), exec_driver_sql."""

    async def factory(kwargs: dict[str, Any], maxsize: int) -> AHandle:
        from sqlalchemy.engine import URL
        from sqlalchemy.ext.asyncio import create_async_engine

        url = URL.create(
            "mysql+aiomysql",
            username=kwargs["user"],
            password=kwargs.get("password") or None,
            host=kwargs["host"],
            port=kwargs["port"],
            database=kwargs["database"],
        )
        engine = create_async_engine(
            url,
            pool_size=maxsize,
            max_overflow=0,
            pool_timeout=30.0,
            pool_reset_on_return=reset_on_return,
            connect_args={"autocommit": bool(kwargs.get("autocommit", False))},
        )

        async def acquire() -> Any:
            return await engine.connect()

        async def release(conn: Any) -> None:
            await conn.close()

        async def query(conn: Any) -> None:
            (await conn.exec_driver_sql("SELECT 1")).fetchall()

        async def session(conn: Any) -> Any:
            return (await conn.get_raw_connection()).driver_connection

        handle = AHandle(acquire, release, engine.dispose, ctx=engine.connect, query=query, session=session)
        await _prime(handle, maxsize)
        return handle

    return factory


def _ours_class() -> tuple[Any, str | None]:
    try:
        module = importlib.import_module("pymysqlpool")
    except Exception as exc:
        return None, f"import pymysqlpool failed: {exc!r}"
    try:
        cls = module.AsyncConnectionPool
    except Exception as exc:  # a lazy attribute may raise anything, e.g. a missing driver
        return None, f"pymysqlpool.AsyncConnectionPool not available: {exc!r}"
    return cls, None


def _takes_driver(cls: Any) -> bool:
    try:
        return "driver" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


def _ours_factory(cls: Any, driver: str, use_ctx: bool) -> AFactory:
    async def factory(kwargs: dict[str, Any], maxsize: int) -> AHandle:
        extra = {"driver": driver} if _takes_driver(cls) else {}
        pool = cls(**kwargs, **extra, maxsize=maxsize, size=maxsize, pre_create_num=maxsize, timeout=30.0)
        await pool.__aenter__()

        async def session(conn: Any) -> Any:
            return conn.raw

        handle = AHandle(
            pool.get_conn,
            pool.release,
            pool.close,
            ctx=pool.connection if use_ctx else None,
            query=driver_select,
            session=session,
            stats=pool.get_stats,
        )
        try:
            await _prime(handle, maxsize)
        except BaseException:
            await pool.close()
            raise
        return handle

    return factory


OURS_AIOMYSQL = "a-ours-aiomysql"
OURS_AIOMYSQL_CTX = "a-ours-aiomysql-ctx"
OURS_ASYNCMY = "a-ours-asyncmy"
AIOMYSQL_POOL = "a-aiomysql-pool"
ASYNCMY_POOL = "a-asyncmy-pool"
SQLA_ROLLBACK = "a-sqla-rollback"
SQLA_NONE = "a-sqla-none"
RAW_AIOMYSQL = "a-raw-aiomysql"
RAW_ASYNCMY = "a-raw-asyncmy"


def _importable(name: str) -> str | None:
    try:
        importlib.import_module(name)
    except Exception as exc:
        return f"{name} not installed ({type(exc).__name__})"
    return None


def discover() -> list[ASubject]:
    """Every async subject in table order; one that cannot run carries the reason."""
    subjects: list[ASubject] = []
    have = {d: _importable(d) for d in ("aiomysql", "asyncmy")}
    for key, driver in ((RAW_AIOMYSQL, "aiomysql"), (RAW_ASYNCMY, "asyncmy")):
        why = have[driver]
        subjects.append(
            ASubject(
                key,
                f"raw {driver} (no pool)",
                _version(driver),
                None if why else _raw_factory(driver),
                why,
                is_pool=False,
                driver=driver,
            )
        )
    for key, driver in ((AIOMYSQL_POOL, "aiomysql"), (ASYNCMY_POOL, "asyncmy")):
        why = have[driver]
        subjects.append(
            ASubject(
                key,
                f"{driver} Pool",
                _version(driver),
                None if why else _driver_pool_factory(driver),
                why,
                driver=driver,
            )
        )
    sqla_why = have["aiomysql"] or _importable("sqlalchemy.ext.asyncio") or _importable("greenlet")
    for key, label, reset in (
        (SQLA_ROLLBACK, "SQLAlchemy async engine (reset: rollback)", "rollback"),
        (SQLA_NONE, "SQLAlchemy async engine (reset: None)", None),
    ):
        subjects.append(
            ASubject(
                key,
                label,
                _version("SQLAlchemy"),
                None if sqla_why else _sqlalchemy_factory(reset),
                sqla_why,
                resets=reset is not None,
                driver="aiomysql",
            )
        )
    cls, why = _ours_class()
    version = _version("pymysql-pool")
    for key, label, driver, use_ctx in (
        (OURS_AIOMYSQL, "AsyncConnectionPool aiomysql get_conn/release", "aiomysql", False),
        (OURS_AIOMYSQL_CTX, "AsyncConnectionPool aiomysql connection()", "aiomysql", True),
        (OURS_ASYNCMY, "AsyncConnectionPool asyncmy get_conn/release", "asyncmy", False),
    ):
        reason = why or have[driver]
        if reason is None and driver != "aiomysql" and not _takes_driver(cls):
            continue  # this AsyncConnectionPool speaks aiomysql only: no row for the other driver
        factory = None if reason else _ours_factory(cls, driver, use_ctx)
        subjects.append(ASubject(key, label, version, factory, reason, ours=True, driver=driver))
    return subjects


# --- loops -------------------------------------------------------------------------


async def _overhead_loop(h: AHandle, n: int) -> int:
    if h.ctx is not None:
        cm = h.ctx
        t0 = perf_counter_ns()
        for _ in range(n):
            async with cm():
                pass
        return perf_counter_ns() - t0
    acquire, release = h.acquire, h.release
    t0 = perf_counter_ns()
    for _ in range(n):
        await release(await acquire())
    return perf_counter_ns() - t0


async def _query_loop(h: AHandle, n: int) -> int:
    query = h.query
    if h.direct is not None:
        conn = h.direct
        t0 = perf_counter_ns()
        for _ in range(n):
            await query(conn)
        return perf_counter_ns() - t0
    if h.ctx is not None:
        cm = h.ctx
        t0 = perf_counter_ns()
        for _ in range(n):
            async with cm() as conn:
                await query(conn)
        return perf_counter_ns() - t0
    acquire, release = h.acquire, h.release
    t0 = perf_counter_ns()
    for _ in range(n):
        conn = await acquire()
        await query(conn)
        await release(conn)
    return perf_counter_ns() - t0


async def _raw_loop(session: Any, n: int) -> int:
    t0 = perf_counter_ns()
    for _ in range(n):
        await driver_select(session)
    return perf_counter_ns() - t0


async def _paired_round(h: AHandle, cycles: int, ratios: list[float]) -> tuple[int, int]:
    """Blocks of pool cycles alternating with raw SELECT 1 on the same session (borrowed)."""
    pool_ns = floor_ns = done = block = 0
    while done < cycles:
        n = min(FLOOR_BLOCK, cycles - done)
        if block % 2:
            pool_block = await _query_loop(h, n)
        conn = await h.acquire()
        try:
            floor_block = await _raw_loop(await h.session(conn), n)
        finally:
            await h.release(conn)
        if not block % 2:
            pool_block = await _query_loop(h, n)
        ratios.append(pool_block / floor_block)
        pool_ns += pool_block
        floor_ns += floor_block
        done += n
        block += 1
    return pool_ns, floor_ns


# --- results -----------------------------------------------------------------------


@dataclass
class ATiming:
    cycles: int
    rounds: int
    maxsize: int
    samples: dict[str, list[float]] = field(default_factory=dict)
    floors: dict[str, list[float]] = field(default_factory=dict)
    block_ratios: dict[str, list[float]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def median_us(self, key: str) -> float | None:
        values = self.samples.get(key)
        return median(values) if values and key not in self.failed else None

    def floor_us(self, key: str) -> float | None:
        values = self.floors.get(key)
        return median(values) if values and key not in self.failed else None

    def floor_ratio(self, key: str) -> float | None:
        values = self.block_ratios.get(key)
        return median(values) if values and key not in self.failed else None

    def added_us(self, key: str) -> float | None:
        """Median over rounds of (pool cycle - raw SELECT 1 of the same round): the
        pool's own µs per cycle, which does not swing with the round trip as the ratio does."""
        pool, raw = self.samples.get(key), self.floors.get(key)
        if key in self.failed or not pool or not raw or len(pool) != len(raw):
            return None
        return median([p - r for p, r in zip(pool, raw, strict=True)])


@dataclass
class AsyncResult:
    subjects: list[ASubject]
    overhead: ATiming | None = None
    query: ATiming | None = None
    contention: list[ContentionRow] = field(default_factory=list)
    duration_s: float = 0.0
    runs: int = 0
    method: str = ""


async def _open(
    subjects: list[ASubject], kwargs: dict[str, Any], maxsize: int, failed: dict[str, str]
) -> dict[str, AHandle]:
    handles: dict[str, AHandle] = {}
    for s in subjects:
        if s.factory is None:
            continue
        try:
            handles[s.key] = await asyncio.wait_for(s.factory(kwargs, maxsize), 60)
        except Exception as exc:
            failed[s.key] = f"setup failed: {exc!r}"[:200]
    return handles


async def _close_all(handles: dict[str, AHandle]) -> None:
    for h in handles.values():
        with contextlib.suppress(Exception):
            await asyncio.wait_for(h.close(), 10)


async def _timing(
    ctx: Context, subjects: list[ASubject], cycles: int, rounds: int, maxsize: int, with_floor: bool
) -> ATiming:
    s = ctx.settings
    result = ATiming(cycles, rounds, maxsize)
    if with_floor:
        loop: Callable[[AHandle, int], Awaitable[int]] = _query_loop
    else:
        loop = _overhead_loop
    handles = await _open(subjects, ctx.pool_kwargs, maxsize, result.failed)
    try:
        active = dict(handles)
        for key, h in list(active.items()):
            try:
                await loop(h, s.warmup_cycles)
                if with_floor:
                    await _paired_round(h, s.warmup_cycles, [])
            except Exception as exc:
                result.failed[key] = f"warm-up failed: {exc!r}"[:200]
                del active[key]
        for r in range(rounds):
            ctx.say(f"{'query' if with_floor else 'overhead'} round {r + 1}/{rounds}")
            order = list(active.items())
            shift = r % len(order) if order else 0
            for key, h in order[shift:] + order[:shift]:
                gc.collect()
                try:
                    if with_floor:
                        ratios = result.block_ratios.setdefault(key, [])
                        ns, floor_ns = await _paired_round(h, cycles, ratios)
                        result.floors.setdefault(key, []).append(floor_ns / cycles / 1000.0)
                    else:
                        ns = await loop(h, cycles)
                except Exception as exc:
                    result.failed[key] = f"failed in round {r + 1}: {exc!r}"[:200]
                    del active[key]
                    continue
                result.samples.setdefault(key, []).append(ns / cycles / 1000.0)
    finally:
        await _close_all(handles)
    return result


# --- contention --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _borrowed(h: AHandle) -> AsyncIterator[Any]:
    if h.ctx is not None:
        async with h.ctx() as conn:
            yield conn
        return
    conn = await h.acquire()
    try:
        yield conn
    finally:
        await h.release(conn)


async def _contend(ctx: Context, subject: ASubject, tasks: int, maxsize: int) -> ContentionRow:
    row = ContentionRow(subject.key, tasks, maxsize)
    if not subject.is_pool:
        row.error = "no pool"
        return row
    if subject.factory is None:
        row.error = subject.missing or "unavailable"
        return row
    s = ctx.settings
    baseline = await asyncio.to_thread(_settled_count, ctx)
    try:
        h = await asyncio.wait_for(subject.factory(ctx.pool_kwargs, maxsize), 60)
    except Exception as exc:
        row.error = f"setup failed: {exc!r}"[:200]
        return row
    stop = threading.Event()
    peak = [0]
    sampler = threading.Thread(target=_sampler, args=(ctx, baseline, stop, peak), daemon=True)
    try:
        for _ in range(s.warmup_cycles):
            async with _borrowed(h) as conn:
                await h.query(conn)
        gc.collect()
        go = asyncio.Event()
        counts = [0] * tasks
        errs = [0] * tasks
        waits: list[list[int]] = [[] for _ in range(tasks)]
        sample: list[str] = []
        deadline = [0]
        query, ctx_cm, acquire, release = h.query, h.ctx, h.acquire, h.release

        async def worker(i: int) -> None:
            mine = waits[i]
            await go.wait()
            end = deadline[0]
            done = bad = 0
            while done + bad < s.max_cycles_per_thread and perf_counter_ns() < end:
                t0 = perf_counter_ns()
                try:
                    if ctx_cm is not None:
                        async with ctx_cm() as conn:
                            mine.append(perf_counter_ns() - t0)
                            await query(conn)
                    else:
                        conn = await acquire()
                        mine.append(perf_counter_ns() - t0)
                        try:
                            await query(conn)
                        finally:
                            await release(conn)
                except Exception as exc:
                    bad += 1
                    if not sample:
                        sample.append(f"{type(exc).__name__}: {exc}"[:160])
                    continue
                done += 1
            counts[i], errs[i] = done, bad

        sampler.start()
        running = [asyncio.ensure_future(worker(i)) for i in range(tasks)]
        await asyncio.sleep(0)  # every worker is parked on the event
        start = perf_counter_ns()
        deadline[0] = start + int(s.duration_s * 1e9)
        go.set()
        _, pending = await asyncio.wait(running, timeout=s.duration_s + 60.0)
        end = perf_counter_ns()
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)
        row.stuck_threads = len(pending)
        row.elapsed_s = (end - start) / 1e9
        row.per_thread = counts
        row.cycles = sum(counts)
        row.errors = sum(errs)
        row.error_sample = sample[0] if sample else None
        row.runs = 1
        row.run_cvs = [coefficient_of_variation(counts)]
        row.waits_ns = [w for per in waits for w in per]
        row.summarize_waits()
        if h.stats is not None:
            with contextlib.suppress(Exception):
                row.pool_stats = dict(h.stats())
    finally:
        stop.set()
        if sampler.is_alive():
            await asyncio.to_thread(sampler.join, 10.0)
        row.server_conns = peak[0]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(h.close(), 10)
    return row


async def _contention(ctx: Context, subjects: list[ASubject]) -> list[ContentionRow]:
    s = ctx.settings
    rows: list[ContentionRow] = []
    for tasks, maxsize in s.contention:
        merged: dict[str, ContentionRow] = {}
        for run in range(s.contention_runs):
            order = subjects if run % 2 == 0 else list(reversed(subjects))
            for subject in order:
                if subject.factory is not None and subject.is_pool:
                    ctx.say(f"{tasks} tasks / maxsize {maxsize}, run {run + 1}: {subject.label}")
                row = await _contend(ctx, subject, tasks, maxsize)
                if subject.key in merged:
                    merged[subject.key].absorb(row)
                else:
                    merged[subject.key] = row
        for row in merged.values():
            row.waits_ns = []
        rows += [merged[subject.key] for subject in subjects]
    return rows


async def _run(ctx: Context, subjects: list[ASubject]) -> AsyncResult:
    s = ctx.settings
    result = AsyncResult(subjects, duration_s=s.duration_s, runs=s.contention_runs, method=ctx.conn_counter.method)
    result.overhead = await _timing(ctx, subjects, s.overhead_cycles, s.rounds, s.small_maxsize, False)
    # maxsize=1: every cycle runs on one server session, the floor's.
    result.query = await _timing(ctx, subjects, s.query_cycles, s.query_rounds, 1, True)
    result.contention = await _contention(ctx, subjects)
    return result


def run_async(ctx: Context, subjects: list[ASubject] | None = None) -> AsyncResult:
    """The whole `async` scenario on a fresh event loop."""
    subjects = discover() if subjects is None else subjects
    with warnings.catch_warnings():
        # aiomysql warns about its own deprecated loop handling on some Pythons.
        warnings.simplefilter("ignore", DeprecationWarning)
        return asyncio.run(_run(ctx, subjects))


# --- targets -----------------------------------------------------------------------

OVERHEAD_MAX_US = 2.0
OVERHEAD_VS_AIOMYSQL = 2.5
QUERY_MAX_RATIO = 1.05
FAIRNESS_MAX_CV = 0.10


def checks(result: AsyncResult) -> list[Check]:
    out: list[Check] = []
    ours = [s for s in result.subjects if s.ours]
    ov = result.overhead
    if ov is not None:
        peer = ov.median_us(AIOMYSQL_POOL)
        for s in ours:
            us = ov.median_us(s.key)
            out.append(
                Check(
                    "async overhead",
                    s.label,
                    f"≤ {OVERHEAD_MAX_US:g} µs",
                    None if us is None else us <= OVERHEAD_MAX_US,
                    f"{fmt(us)} µs",
                )
            )
            ratio = None if us is None or peer is None or us <= 0 else peer / us
            out.append(
                Check(
                    "async overhead",
                    s.label,
                    f"≥ {OVERHEAD_VS_AIOMYSQL:g}x less than aiomysql Pool",
                    None if ratio is None else ratio >= OVERHEAD_VS_AIOMYSQL,
                    f"{fmt(ratio, 1)}x ({fmt(us)} vs {fmt(peer)} µs)",
                )
            )
    q = result.query
    if q is not None:
        for s in ours:
            ratio = q.floor_ratio(s.key)
            out.append(
                Check(
                    "async query",
                    s.label,
                    f"≤ {QUERY_MAX_RATIO:g}x raw {s.driver}",
                    None if ratio is None else ratio <= QUERY_MAX_RATIO,
                    f"{fmt(ratio, 3)}x",
                )
            )
    by_key = {s.key: s for s in result.subjects}
    for tasks, maxsize in sorted({(r.threads, r.maxsize) for r in result.contention}):
        scen = f"async contention {tasks} tasks / {maxsize}"
        rows = [r for r in result.contention if (r.threads, r.maxsize) == (tasks, maxsize)]
        resetting = [
            r.throughput
            for r in rows
            if r.error is None and by_key[r.key].resets and not by_key[r.key].ours and r.throughput
        ]
        best = max(resetting) if resetting else None
        for r in rows:
            s = by_key[r.key]
            if not s.ours:
                continue
            if r.error is not None:
                for target in (
                    "zero errors",
                    "throughput ≥ best resetting peer",
                    f"fairness CV ≤ {FAIRNESS_MAX_CV:g}",
                    "server conns ≤ maxsize",
                ):
                    out.append(Check(scen, s.label, target, None, r.error[:80]))
                continue
            tput, cv = r.throughput, r.fairness_cv
            out += [
                Check(
                    scen,
                    s.label,
                    "zero errors",
                    r.errors == 0 and r.stuck_threads == 0,
                    f"{r.errors} errors, {r.stuck_threads} stuck tasks",
                ),
                Check(
                    scen,
                    s.label,
                    "throughput ≥ best resetting peer",
                    None if tput is None or best is None else tput >= best,
                    f"{fmt(tput, 0)} vs {fmt(best, 0)} cycles/s",
                ),
                Check(
                    scen,
                    s.label,
                    f"fairness CV ≤ {FAIRNESS_MAX_CV:g}",
                    None if cv is None else cv <= FAIRNESS_MAX_CV,
                    f"CV {fmt(cv, 3)}",
                ),
                Check(
                    scen,
                    s.label,
                    "server conns ≤ maxsize",
                    None if r.server_conns is None else r.server_conns <= maxsize,
                    f"{r.server_conns} of {maxsize}",
                ),
            ]
    return out


# --- tables ------------------------------------------------------------------------


def _verdict(all_checks: list[Check], scenario: str, label: str) -> str:
    mine = [c for c in all_checks if c.scenario == scenario and c.subject == label]
    if not mine:
        return ""
    if all(c.ok for c in mine):
        return "PASS"
    return "; ".join(f"{c.verdict} {c.target}" for c in mine if not c.ok)


def _why(s: ASubject, failed: dict[str, str]) -> str | None:
    return failed.get(s.key) or s.missing


def _spread(values: list[float] | None) -> str:
    return NA if not values else f"{min(values):,.2f}-{max(values):,.2f}"


def tables(result: AsyncResult, all_checks: list[Check]) -> list[Table]:
    out: list[Table] = []
    subjects = result.subjects
    versions = ", ".join(
        f"{name} {_version(dist)}"
        for name, dist in (
            ("aiomysql", "aiomysql"),
            ("asyncmy", "asyncmy"),
            ("SQLAlchemy", "SQLAlchemy"),
            ("greenlet", "greenlet"),
        )
    )
    missing = [f"{s.label}: n/a ({s.missing})" for s in subjects if s.missing]
    ov = result.overhead
    if ov is not None:
        peer = ov.median_us(AIOMYSQL_POOL)
        rows = []
        for s in subjects:
            us = ov.median_us(s.key)
            rows.append(
                [
                    s.label + (" — harness floor" if not s.is_pool else ""),
                    fmt(us),
                    _spread(ov.samples.get(s.key) if us is not None else None),
                    fmt(None if us is None or peer is None or not us else peer / us, 1),
                    _verdict(all_checks, "async overhead", s.label),
                ]
            )
        out.append(
            Table(
                "A1. Async overhead: acquire + release of a clean connection",
                ["Subject", "µs/cycle (median)", "rounds min-max", "x less than aiomysql Pool", "Target"],
                rows,
                [
                    f"Median of {ov.rounds} rounds of {ov.cycles:,} cycles, maxsize={ov.maxsize}, one event loop; "
                    "rounds interleaved across subjects, GC collected before each.",
                    "Peers are used the documented way: `async with pool.acquire()` (aiomysql, asyncmy), "
                    "`async with engine.connect()` (SQLAlchemy). aiomysql's release() spawns a wake-up task each time.",
                    "Raw rows: the same loop with no-op coroutines, the harness's own cost.",
                    f"Versions: {versions}.",
                    *[f"{s.label}: n/a ({why})" for s in subjects if s.missing is None and (why := _why(s, ov.failed))],
                    *missing,
                ],
            )
        )
    q = result.query
    if q is not None:
        rows = []
        for s in subjects:
            us = q.median_us(s.key)
            rows.append(
                [
                    s.label,
                    fmt(us),
                    _spread(q.samples.get(s.key) if us is not None else None),
                    fmt(q.floor_us(s.key)),
                    fmt(q.added_us(s.key)) if s.is_pool else "",
                    fmt(q.floor_ratio(s.key), 3),
                    _verdict(all_checks, "async query", s.label),
                ]
            )
        out.append(
            Table(
                "A2. Async query cycle: acquire + SELECT 1 + fetch + release",
                ["Subject", "µs/cycle (median)", "rounds min-max", "raw SELECT 1 µs", "added µs", "x raw", "Target"],
                rows,
                [
                    f"Median of {q.rounds} rounds of {q.cycles:,} cycles on maxsize=1 (one server session per "
                    "subject). raw SELECT 1 = the same driver's cursor on that session while it is borrowed, in "
                    f"blocks of {FLOOR_BLOCK} alternating with blocks of pool cycles; x raw = median of the "
                    "adjacent block ratios; added µs = median over rounds of (pool - raw) per cycle: the "
                    "pool's own cost, steadier than the ratio while the round trip swings with machine load.",
                    "The raw rows are the drivers' own round trip (µs/cycle) with no pool. SQLAlchemy's cycle "
                    "is `exec_driver_sql` on an AsyncConnection (its Core layer is included, as users run it).",
                    *[f"{s.label}: n/a ({why})" for s in subjects if s.missing is None and (why := _why(s, q.failed))],
                    *missing,
                ],
            )
        )
    by_key = {s.key: s for s in subjects}
    for tasks, maxsize in sorted({(r.threads, r.maxsize) for r in result.contention}):
        scen = f"async contention {tasks} tasks / {maxsize}"
        rows, notes = [], []
        for r in result.contention:
            if (r.threads, r.maxsize) != (tasks, maxsize):
                continue
            s = by_key[r.key]
            if r.error is not None:
                if r.error != "no pool" and s.missing is None:
                    rows.append([s.label, *[NA] * 8, _verdict(all_checks, scen, s.label)])
                    notes.append(f"{s.label}: n/a ({r.error})")
                continue
            rows.append(
                [
                    s.label,
                    fmt(r.throughput, 0),
                    str(r.errors),
                    fmt(r.wait_p50_ms, 3),
                    fmt(r.wait_p99_ms, 3),
                    fmt(r.wait_max_ms, 1),
                    fmt(r.fairness_cv, 3),
                    str(r.server_conns),
                    str(r.cycles),
                    _verdict(all_checks, scen, s.label),
                ]
            )
            if r.error_sample:
                notes.append(f"{s.label}: {r.errors} errors, e.g. {r.error_sample}")
            if r.stuck_threads:
                notes.append(f"{s.label}: {r.stuck_threads} tasks still running at the end (cancelled)")
        out.append(
            Table(
                f"A3. Async contention: {tasks} tasks on maxsize={maxsize}, {result.runs} x {result.duration_s:g} s",
                ["Subject", *CONTENTION_COLUMNS],
                rows,
                [
                    "Each task loops acquire + SELECT 1 + fetch + release until a shared deadline (also capped "
                    "in count); wait = time inside the acquire. One event loop, no threads.",
                    "fairness CV = stdev/mean of per-task completed cycles, mean over runs. Throughput target: "
                    "at least the best peer that resets every returned connection (SQLAlchemy rollback); "
                    "aiomysql's and asyncmy's pools reset nothing (they close a connection returned inside a "
                    "transaction).",
                    f"server conns = peak, sampled every ~20 ms: {result.method}.",
                    *notes,
                    *missing,
                ],
            )
        )
    return out


def targets_table(all_checks: list[Check]) -> Table:
    rows = [[c.verdict, c.scenario, c.subject, c.target, c.measured] for c in all_checks]
    return Table("A4. Async targets", ["Result", "Scenario", "Subject", "Target", "Measured"], rows)
