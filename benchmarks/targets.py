"""Targets for this project's rows, computed only from the measured numbers.

A check is "n/a" (ok=None) when a number it needs was not measured, e.g. a
peer failed to load; it then counts neither as PASS nor as MISS.
"""

from __future__ import annotations

from benchmarks.common import Check, fmt
from benchmarks.peers import OLD, OURS_PAIR, Subject
from benchmarks.scenarios import (
    BookkeepingResult,
    ContentionResult,
    TimingResult,
    TripResult,
)

OVERHEAD_MAX_US = 3.0
OVERHEAD_VS_OLD = 20.0
QUERY_MAX_RATIO = 1.05
FAIRNESS_MAX_CV = 0.10
WAIT_FRACTION_OF_WORST_PEER = 0.10
BOOKKEEPING_MAX_RATIO = 1.2


def _ours(subjects: list[Subject]) -> list[Subject]:
    return [s for s in subjects if s.ours]


def _peers(subjects: list[Subject]) -> list[Subject]:
    return [s for s in subjects if s.is_pool and not s.ours]


def overhead_checks(result: TimingResult, subjects: list[Subject]) -> list[Check]:
    checks = []
    old = result.median_us(OLD)
    peer_values = [v for s in _peers(subjects) if (v := result.median_us(s.key)) is not None]
    for s in _ours(subjects):
        us = result.median_us(s.key)
        scen = "overhead"
        checks.append(
            Check(
                scen,
                s.label,
                f"≤ {OVERHEAD_MAX_US:g} µs",
                None if us is None else us <= OVERHEAD_MAX_US,
                f"{fmt(us)} µs",
            )
        )
        if us is None or old is None:
            checks.append(Check(scen, s.label, "≥ 20x less than 0.5.0", None, "n/a"))
        else:
            ratio = old / us
            checks.append(
                Check(
                    scen, s.label, f"≥ {OVERHEAD_VS_OLD:g}x less than 0.5.0", ratio >= OVERHEAD_VS_OLD, f"{ratio:,.1f}x"
                )
            )
        best = min(peer_values) if peer_values else None
        checks.append(
            Check(
                scen,
                s.label,
                "below every peer",
                None if us is None or best is None else us < best,
                f"{fmt(us)} vs best peer {fmt(best)} µs",
            )
        )
    return checks


def query_checks(result: TimingResult, subjects: list[Subject]) -> list[Check]:
    checks = []
    for s in _ours(subjects):
        ratio = result.floor_ratio(s.key)
        checks.append(
            Check(
                "query",
                s.label,
                f"≤ {QUERY_MAX_RATIO:g}x raw SELECT 1",
                None if ratio is None else ratio <= QUERY_MAX_RATIO,
                f"{fmt(ratio, 3)}x",
            )
        )
    return checks


def trip_checks(result: TripResult, subjects: list[Subject]) -> list[Check]:
    checks = []
    ours = {s.key: s for s in _ours(subjects)}
    for row in result.rows:
        subject = ours.get(row.key)
        if subject is None:
            continue
        if row.added is not None and row.quiet == 0:
            # Every window had foreign traffic: the numbers cannot be trusted either way.
            target = "0 added round trips" if row.kind == "clean" else "exactly 1 ROLLBACK"
            checks.append(Check(f"round trips: {row.kind}", subject.label, target, None, "no quiet window"))
            continue
        if row.kind == "clean":
            trips = row.round_trips
            conns = row.per_cycle("Connections")
            ok = None if trips is None or conns is None else trips == 0 and conns == 0
            checks.append(
                Check(
                    "round trips: clean",
                    subject.label,
                    "0 added round trips",
                    ok,
                    f"{fmt(trips)} round trips, {fmt(conns)} connects per cycle",
                )
            )
        else:
            rollbacks = row.per_cycle("Com_rollback")
            checks.append(
                Check(
                    "round trips: dirty",
                    subject.label,
                    "exactly 1 ROLLBACK",
                    None if rollbacks is None else rollbacks == 1,
                    f"{fmt(rollbacks)} ROLLBACK, {fmt(row.round_trips)} round trips per cycle",
                )
            )
    return checks


def contention_checks(result: ContentionResult, subjects: list[Subject]) -> list[Check]:
    by_key = {s.key: s for s in subjects}
    checks = []
    configs = sorted({(r.threads, r.maxsize) for r in result.rows}, key=lambda c: c[0])
    for threads, maxsize in configs:
        scen = f"contention {threads} threads / {maxsize}"
        rows = [r for r in result.rows if (r.threads, r.maxsize) == (threads, maxsize)]
        peers = [r for r in rows if r.error is None and not by_key[r.key].ours and by_key[r.key].is_pool]
        resetting = [r.throughput for r in peers if by_key[r.key].resets and r.throughput]
        best_resetting = max(resetting) if resetting else None
        peer_waits = [r.wait_max_ms for r in peers if r.wait_max_ms is not None]
        worst_wait = max(peer_waits) if peer_waits else None
        for row in rows:
            subject = by_key[row.key]
            if not subject.ours:
                continue
            if row.error is not None:
                for target in (
                    "zero errors",
                    "throughput ≥ best resetting peer",
                    "fairness CV ≤ 0.10",
                    "max wait ≤ 1/10 worst peer",
                    "server conns ≤ maxsize",
                ):
                    checks.append(Check(scen, subject.label, target, None, "n/a"))
                continue
            tput, cv, wait = row.throughput, row.fairness_cv, row.wait_max_ms
            checks += [
                Check(
                    scen,
                    subject.label,
                    "zero errors",
                    row.errors == 0 and row.stuck_threads == 0,
                    f"{row.errors} errors, {row.stuck_threads} stuck threads",
                ),
                Check(
                    scen,
                    subject.label,
                    "throughput ≥ best resetting peer",
                    None if tput is None or best_resetting is None else tput >= best_resetting,
                    f"{fmt(tput, 0)} vs {fmt(best_resetting, 0)} cycles/s",
                ),
                Check(
                    scen,
                    subject.label,
                    f"fairness CV ≤ {FAIRNESS_MAX_CV:g}",
                    None if cv is None else cv <= FAIRNESS_MAX_CV,
                    f"CV {fmt(cv, 3)}",
                ),
                Check(
                    scen,
                    subject.label,
                    "max wait ≤ 1/10 worst peer",
                    None if wait is None or worst_wait is None else wait <= WAIT_FRACTION_OF_WORST_PEER * worst_wait,
                    f"{fmt(wait)} vs worst peer {fmt(worst_wait)} ms",
                ),
                Check(
                    scen,
                    subject.label,
                    "server conns ≤ maxsize",
                    None if row.server_conns is None else row.server_conns <= maxsize,
                    f"{row.server_conns} of {maxsize}",
                ),
            ]
    return checks


def bookkeeping_checks(result: BookkeepingResult, subjects: list[Subject]) -> list[Check]:
    label = next((s.label for s in subjects if s.key == OURS_PAIR), "pymysqlpool")
    lo, hi = min(result.us, default=None), max(result.us, default=None)
    target = f"cost at {hi or 1000} ≤ {BOOKKEEPING_MAX_RATIO:g}x at {lo or 10} idle"
    if result.error is not None or lo is None or hi is None or lo == hi:
        return [Check("bookkeeping", label, target, None, result.error or "n/a")]
    ratio = result.us[hi] / result.us[lo]
    return [Check("bookkeeping", label, target, ratio <= BOOKKEEPING_MAX_RATIO, f"{ratio:.2f}x")]
