"""Scenario 7: what a new connection costs, and how long 50 take to warm up.

PyMySQL 1.2 builds a TLS context (loading the system CA store) on every
connect, even when the server offers no TLS; the pool builds it once per pool
and only when a server offers TLS. Raw PyMySQL is measured both ways: with its
defaults (what the peers pay: they connect through ``pymysql.connect``) and with
``ssl_disabled=True`` (the floor). Rounds are interleaved so a slow patch of the
machine hits every subject alike.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pymysql

from benchmarks.common import NA, Check, Table, fmt, median
from benchmarks.peers import DBUTILS, OLD, close_050_pool, import_ours, load_pymysqlpool_050
from benchmarks.scenarios import Context

CONNECT_MAX_RATIO = 1.5  # a connect through the pool vs raw PyMySQL with ssl_disabled=True
WARMUP_SIZE = 50

RAW_DEFAULT = "raw PyMySQL, defaults (TLS context per connect)"
RAW_PLAIN = "raw PyMySQL, ssl_disabled=True"
OURS_DIAL = "pymysqlpool: a borrow that dials (pool defaults)"
OURS_NEW_POOL = "pymysqlpool: new pool + first borrow"


@dataclass
class ConnectResult:
    connects: int
    warmup_rounds: int
    connect_ms: dict[str, list[float]] = field(default_factory=dict)
    # CPU time of the connecting thread: what the client itself spends, which
    # the machine's load does not inflate the way it inflates wall-clock time.
    connect_cpu_ms: dict[str, list[float]] = field(default_factory=dict)
    warmup_ms: dict[str, list[float]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def connect_median(self, label: str) -> float | None:
        values = self.connect_ms.get(label)
        return median(values) if values else None

    def connect_cpu_median(self, label: str) -> float | None:
        values = self.connect_cpu_ms.get(label)
        return median(values) if values else None

    def warmup_median(self, label: str) -> float | None:
        values = self.warmup_ms.get(label)
        return median(values) if values else None


def _timed(action: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall-clock ms, this thread's CPU ms, and what ``action`` returned."""
    # The previous subject's garbage (PyMySQL's per-connect TLS contexts sit in
    # reference cycles) must not be collected on this subject's time.
    gc.collect()
    cpu, start = time.thread_time(), time.perf_counter()
    value = action()
    return (time.perf_counter() - start) * 1000.0, (time.thread_time() - cpu) * 1000.0, value


def run_connect(ctx: Context) -> ConnectResult:
    quick = ctx.settings.rounds <= 5
    result = ConnectResult(connects=15 if quick else 61, warmup_rounds=1 if quick else 5)
    kwargs = ctx.pool_kwargs
    ours, why = import_ours()
    if ours is None:
        result.failed[OURS_DIAL] = result.failed[OURS_NEW_POOL] = why or "not importable"
    connects: dict[str, Callable[[], None]] = {
        RAW_DEFAULT: lambda: pymysql.connect(**kwargs).close(),
        RAW_PLAIN: lambda: pymysql.connect(ssl_disabled=True, **kwargs).close(),
    }
    pools: list[Any] = []
    if ours is not None:
        # size=0 and a lifetime of a microsecond: every return closes the
        # connection and nothing refills it, so every borrow dials.
        dialer = ours.ConnectionPool(maxsize=1, size=0, con_lifetime=1e-6, **kwargs)
        pools.append(dialer)
        connects[OURS_DIAL] = lambda: dialer.get_conn().close()

        def new_pool() -> None:
            pool = ours.ConnectionPool(maxsize=1, **kwargs)
            try:
                pool.get_conn().close()
            finally:
                pool.close()

        connects[OURS_NEW_POOL] = new_pool
    try:
        for label in connects:
            result.connect_ms[label] = []
            result.connect_cpu_ms[label] = []
        for i in range(result.connects):
            if i % 10 == 0:
                ctx.say(f"connects {i}/{result.connects}")
            for label, action in connects.items():
                wall, cpu, _ = _timed(action)
                result.connect_ms[label].append(wall)
                result.connect_cpu_ms[label].append(cpu)
    finally:
        for pool in pools:
            pool.close()
    _run_warmups(ctx, result, ours)
    return result


def _warmups(ctx: Context, ours: Any) -> dict[str, tuple[Callable[[], Any], Callable[[Any], None]]]:
    """label -> (open WARMUP_SIZE connections and return the holder, close the holder)."""
    kwargs = ctx.pool_kwargs
    n = WARMUP_SIZE

    def raw(**extra: Any) -> Callable[[], Any]:
        return lambda: [pymysql.connect(**extra, **kwargs) for _ in range(n)]

    def close_all(conns: Any) -> None:
        for conn in conns:
            conn.close()

    subjects: dict[str, tuple[Callable[[], Any], Callable[[Any], None]]] = {
        "raw PyMySQL, defaults, one after another": (raw(), close_all),
        "raw PyMySQL, ssl_disabled=True, one after another": (raw(ssl_disabled=True), close_all),
    }
    if ours is not None:
        from pymysqlpool import _warmup

        def ours_pool(at_once: int) -> Callable[[], Any]:
            def build() -> Any:
                saved, _warmup.MAX_AT_ONCE = _warmup.MAX_AT_ONCE, at_once
                try:
                    return ours.ConnectionPool(maxsize=n, size=n, pre_create_num=n, **kwargs)
                finally:
                    _warmup.MAX_AT_ONCE = saved

            return build

        subjects[f"pymysqlpool pre_create_num={n} (up to {_warmup.MAX_AT_ONCE} at once)"] = (
            ours_pool(_warmup.MAX_AT_ONCE),
            lambda pool: pool.close(),
        )
        subjects[f"pymysqlpool pre_create_num={n}, one at a time (MAX_AT_ONCE=1)"] = (
            ours_pool(1),
            lambda pool: pool.close(),
        )
    if any(s.key == OLD and s.available for s in ctx.subjects):
        old = load_pymysqlpool_050()
        subjects[f"pymysql-pool 0.5.0 pre_create_num={n}"] = (
            lambda: old.ConnectionPool(size=n, maxsize=n, pre_create_num=n, **kwargs),
            close_050_pool,
        )
    if any(s.key == DBUTILS and s.available for s in ctx.subjects):
        from dbutils.pooled_db import PooledDB

        subjects[f"DBUtils PooledDB mincached={n}"] = (
            lambda: PooledDB(creator=pymysql, mincached=n, maxcached=n, maxconnections=n, **kwargs),
            lambda pool: pool.close(),
        )
    return subjects


def _run_warmups(ctx: Context, result: ConnectResult, ours: Any) -> None:
    subjects = _warmups(ctx, ours)
    for label in subjects:
        result.warmup_ms[label] = []
    for r in range(result.warmup_rounds):
        ctx.say(f"warm-up round {r + 1}/{result.warmup_rounds}")
        for label, (build, close) in subjects.items():
            if label in result.failed:
                continue
            try:
                ms, _, holder = _timed(build)
            except Exception as exc:
                result.failed[label] = f"{type(exc).__name__}: {exc}"
                continue
            result.warmup_ms[label].append(ms)
            with contextlib.suppress(Exception):
                close(holder)


def connect_checks(result: ConnectResult) -> list[Check]:
    ours, floor = result.connect_median(OURS_DIAL), result.connect_median(RAW_PLAIN)
    ratio = None if ours is None or not floor else ours / floor
    cpu, cpu_floor = result.connect_cpu_median(OURS_DIAL), result.connect_cpu_median(RAW_PLAIN)
    cpu_ratio = None if cpu is None or not cpu_floor else cpu / cpu_floor
    return [
        Check(
            "connect",
            OURS_DIAL,
            f"≤ {CONNECT_MAX_RATIO:g}x raw ssl_disabled",
            None if ratio is None else ratio <= CONNECT_MAX_RATIO,
            f"{fmt(ours)} ms vs {fmt(floor)} ms ({fmt(ratio)}x);"
            f" CPU {fmt(cpu)} vs {fmt(cpu_floor)} ms ({fmt(cpu_ratio)}x)",
        )
    ]


def connect_tables(result: ConnectResult, checks: list[Check]) -> list[Table]:
    floor = result.connect_median(RAW_PLAIN)
    rows = []
    cpu_floor = result.connect_cpu_median(RAW_PLAIN)
    for label in result.connect_ms:
        if label in result.failed:
            rows.append([label, NA, NA, NA, NA, ""])
            continue
        ms, cpu = result.connect_median(label), result.connect_cpu_median(label)
        verdict = next((c.verdict for c in checks if c.subject == label), "")
        ratio = None if ms is None or not floor else ms / floor
        cpu_ratio = None if cpu is None or not cpu_floor else cpu / cpu_floor
        rows.append([label, fmt(ms), fmt(ratio), fmt(cpu), fmt(cpu_ratio), verdict])
    connect = Table(
        "7. Connect cost: open + close one connection (server without TLS)",
        ["Subject", "ms (median)", "x raw ssl_disabled", "CPU ms (median)", "CPU x raw ssl_disabled", "Target"],
        rows,
        [
            f"Median of {result.connects} interleaved connects each. The peers connect through"
            " pymysql.connect() with its defaults, so they pay the first row.",
            "CPU ms: time.thread_time() of the connecting thread, the client's own work; on a loaded machine"
            " wall-clock times swing widely, this much less.",
            "The pool's dial includes its one set-up query (SELECT @@wait_timeout, for keep-alive).",
            *(f"n/a {k}: {v}" for k, v in result.failed.items() if k in result.connect_ms),
        ],
    )
    fastest = min((m for label in result.warmup_ms if (m := result.warmup_median(label)) is not None), default=None)
    warm_rows = []
    for label in result.warmup_ms:
        ms = result.warmup_median(label)
        warm_rows.append([label, fmt(ms, 1), fmt(None if ms is None or not fastest else ms / fastest)])
    warmup = Table(
        f"8. Warm-up: {WARMUP_SIZE} connections open and ready",
        ["Subject", "ms (median)", "x fastest"],
        warm_rows,
        [
            f"Median of {result.warmup_rounds} round(s), interleaved; pool construction until it returns.",
            "SQLAlchemy's QueuePool has no warm-up: it connects on demand.",
            *(f"n/a {k}: {v}" for k, v in result.failed.items() if k in result.warmup_ms),
        ],
    )
    return [connect, warmup]
