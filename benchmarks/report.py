"""Markdown tables for stdout and docs/benchmarks.md (the charts are in charts.py)."""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.common import CONTENTION_COLUMNS, NA, Check, Settings, Table, fmt
from benchmarks.peers import OURS_PAIR, RAW, Subject
from benchmarks.scenarios import (
    BookkeepingResult,
    ContentionResult,
    MemoryResult,
    TimingResult,
    TripResult,
)


def _numeric(cell: str) -> bool:
    return cell in ("", NA, "inf", "—") or cell.lstrip("-+")[:1].isdigit()


def render(table: Table) -> str:
    """An aligned Markdown table: numeric columns right-aligned, text left."""
    right = [i > 0 and all(_numeric(row[i]) for row in table.rows) for i in range(len(table.headers))]
    widths = [len(h) for h in table.headers]
    for row in table.rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(w) if right[i] else cell.ljust(w) for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if right[i] else ":" + "-" * (w + 1) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(table.headers), rule, *(line(r) for r in table.rows)])


def render_section(table: Table) -> str:
    parts = [f"### {table.title}", "", render(table)]
    if table.notes:
        parts += ["", *(f"- {note}" for note in table.notes)]
    return "\n".join(parts)


def verdict_cell(checks: list[Check], scenario: str, label: str) -> str:
    mine = [c for c in checks if c.scenario == scenario and c.subject == label]
    if not mine:
        return ""
    if all(c.ok for c in mine):
        return "PASS"
    return "; ".join(f"{c.verdict} {c.target}" for c in mine if not c.ok)


def _missing_notes(subjects: list[Subject], failed: dict[str, str]) -> list[str]:
    notes = []
    for s in subjects:
        why = failed.get(s.key) or s.missing
        if why:
            notes.append(f"{s.label}: n/a ({why})")
    return notes


def _spread(values: list[float] | None) -> str:
    return NA if not values else f"{min(values):,.2f}-{max(values):,.2f}"


def overhead_table(result: TimingResult, subjects: list[Subject], checks: list[Check]) -> Table:
    rows = []
    for s in subjects:
        us = result.median_us(s.key)
        label = s.label + (" — harness floor" if s.key == RAW else "")
        rows.append(
            [
                label,
                fmt(us),
                _spread(result.samples.get(s.key) if us is not None else None),
                fmt(result.ratio(s.key, OURS_PAIR), 1),
                verdict_cell(checks, "overhead", s.label),
            ]
        )
    return Table(
        "1. Overhead: borrow + return of a clean connection",
        ["Pool", "µs/cycle (median)", "rounds min-max", "x ours", "Target"],
        rows,
        [
            f"Median of {result.rounds} rounds of {result.cycles:,} cycles each; rounds are "
            "interleaved across pools and GC is collected before each round.",
            "The raw row is the same loop with no-op borrow/return: the harness's own cost.",
            "DBUtils pings on every checkout and rolls back on every return (its defaults); "
            "0.5.0 sends COMMIT on every return; SQLAlchemy 'rollback' sends ROLLBACK.",
            *_missing_notes(subjects, result.failed),
        ],
    )


def query_table(result: TimingResult, subjects: list[Subject], checks: list[Check]) -> Table:
    rows = []
    for s in subjects:
        us = result.median_us(s.key)
        rows.append(
            [
                s.label,
                fmt(us),
                _spread(result.samples.get(s.key) if us is not None else None),
                fmt(result.floor_us(s.key)),
                fmt(result.floor_ratio(s.key), 3),
                verdict_cell(checks, "query", s.label),
            ]
        )
    return Table(
        "2. Query cycle: borrow + SELECT 1 + fetch + return",
        ["Pool", "µs/cycle (median)", "rounds min-max", "raw SELECT 1 µs", "x raw", "Target"],
        rows,
        [
            f"Median of {result.rounds} rounds of {result.cycles:,} cycles; every pool has "
            f"maxsize={result.maxsize}, so all its cycles run on one server session. The raw "
            "row runs SELECT 1 on one open PyMySQL connection with no pool.",
            "raw SELECT 1 = PyMySQL's own cursor on that same session while it is borrowed, "
            "in blocks of 20 alternating with blocks of 20 pool cycles; x raw = median over all "
            "adjacent block pairs of (pool time / raw time). Loopback latency drifts with machine "
            "load and with where the server thread is scheduled (seen here: 40 to 130 µs for the "
            "same SELECT 1), so only a same-session, same-moment ratio is meaningful.",
            *_missing_notes(subjects, result.failed),
        ],
    )


def trips_table(result: TripResult, subjects: list[Subject], checks: list[Check]) -> Table:
    labels = {s.key: s.label for s in subjects}
    rows = []
    for row in result.rows:
        scen = f"round trips: {row.kind}"
        if row.added is None:
            rows.append(
                [labels[row.key], row.kind, *[NA] * 7, f"{NA}: {row.error}"[:60] if row.error != "no pool" else "—"]
            )
            continue
        rows.append(
            [
                labels[row.key],
                row.kind,
                fmt(row.per_cycle("Questions")),
                fmt(row.per_cycle("Com_admin_commands")),
                fmt(row.round_trips),
                fmt(row.per_cycle("Com_commit")),
                fmt(row.per_cycle("Com_rollback")),
                fmt(row.per_cycle("Connections")),
                f"{row.quiet}/{row.windows}",
                verdict_cell(checks, scen, labels[row.key]),
            ]
        )
    cost = result.admin_cost
    return Table(
        "3. Server round trips added per cycle",
        [
            "Pool",
            "cycle",
            "statements",
            "pings",
            "round trips",
            "COMMIT",
            "ROLLBACK",
            "new conns",
            "quiet windows",
            "Target",
        ],
        rows,
        [
            "Global counters (SHOW GLOBAL STATUS: Questions, Com_admin_commands, Com_commit, "
            "Com_rollback, Connections) read from a separate admin connection before and after "
            f"windows of {result.cycles} cycles. Subtracted: the admin's own read (calibrated: "
            f"{cost['Questions']} Question per SHOW) and the borrower's statements (SELECT 1; "
            "plus BEGIN on dirty cycles).",
            "Other clients of the server also move global counters, so each window is checked "
            "against control counters no pool touches (Com_select must equal the SELECT 1s, "
            "Com_begin the BEGINs, Com_insert/update/delete/create_table must not move). "
            f"Windows are repeated until {result.repeats} quiet ones (at most "
            f"{result.max_windows}) and the minimum over the quiet ones is shown; 'quiet "
            "windows' = quiet/measured (0/n: no quiet window, the minimum over all is shown and "
            "may include foreign traffic).",
            "Questions does not count COM_PING; pings show in Com_admin_commands, so round trips = statements + pings.",
            "clean: borrow, SELECT 1, fetch, return. dirty: borrow, begin(), SELECT 1, "
            "return without commit. The raw clean row is the method's control (must be 0).",
        ],
    )


def contention_tables(result: ContentionResult, subjects: list[Subject], checks: list[Check]) -> list[Table]:
    labels = {s.key: s for s in subjects}
    tables = []
    configs = sorted({(r.threads, r.maxsize) for r in result.rows}, key=lambda c: c[0])
    for threads, maxsize in configs:
        scen = f"contention {threads} threads / {maxsize}"
        rows, notes = [], []
        for row in result.rows:
            if (row.threads, row.maxsize) != (threads, maxsize):
                continue
            label = labels[row.key].label
            if row.error is not None:
                if row.error != "no pool":
                    rows.append([label, *[NA] * 8, verdict_cell(checks, scen, label)])
                continue
            rows.append(
                [
                    label,
                    fmt(row.throughput, 0),
                    str(row.errors),
                    fmt(row.wait_p50_ms, 3),
                    fmt(row.wait_p99_ms, 3),
                    fmt(row.wait_max_ms, 1),
                    fmt(row.fairness_cv, 3),
                    str(row.server_conns),
                    str(row.cycles),
                    verdict_cell(checks, scen, label),
                ]
            )
            if row.error_sample:
                notes.append(f"{label}: {row.errors} errors, e.g. {row.error_sample}")
            if row.pool_stats:
                keys = (
                    "connections_made",
                    "closed_broken",
                    "closed_failed_check",
                    "leaks_reclaimed",
                    "borrow_timeouts",
                    "borrow_errors",
                )
                shown = ", ".join(f"{k}={row.pool_stats[k]}" for k in keys if k in row.pool_stats)
                notes.append(f"{label}: pool.get_stats(), summed over its runs: {shown}")
            if row.stuck_threads:
                notes.append(f"{label}: {row.stuck_threads} threads still running at the end")
        tables.append(
            Table(
                f"4. Contention: {threads} threads on maxsize={maxsize}, {result.runs} x {result.duration_s:g} s",
                ["Pool", *CONTENTION_COLUMNS],
                rows,
                [
                    "Each thread loops borrow + SELECT 1 + fetch + return until a shared "
                    "deadline (also capped in count). Wait = time inside the borrow call.",
                    f"Every pool ran {result.runs} time(s), in reversed order on alternate passes; "
                    "cycles, errors and waits are added up over its runs, fairness is the mean of the "
                    "runs' CVs.",
                    "fairness CV = stdev/mean of per-thread completed cycles (0 = perfectly fair).",
                    f"server conns = peak, sampled every ~20 ms: {result.method}.",
                    "0.5.0 borrows with get_connection(retry_num=10, retry_interval=0.1).",
                    *notes,
                    *_missing_notes([s for s in subjects if s.is_pool], {}),
                ],
            )
        )
    return tables


def bookkeeping_table(result: BookkeepingResult, checks: list[Check]) -> Table:
    rows = []
    base = result.us.get(min(result.us)) if result.us else None
    for k, us in sorted(result.us.items()):
        verdict = verdict_cell(checks, "bookkeeping", checks[0].subject) if (checks and k == max(result.us)) else ""
        rows.append([str(k), fmt(us, 3), fmt(us / base if base else None), verdict])
    if result.error is not None:
        rows = [[NA, NA, NA, f"{NA}"]]
    return Table(
        "5. Bookkeeping: borrow + return with k idle connections (fake driver)",
        ["idle connections", "µs/cycle", "x at smallest k", "Target"],
        rows,
        [
            "pymysqlpool get_conn/release only, maxsize=1000, pre_create_num=k, over a "
            "socket-free fake connection; median of "
            f"{result.rounds} rounds of {result.cycles:,} cycles.",
            *([f"n/a: {result.error}"] if result.error else []),
        ],
    )


def memory_table(result: MemoryResult) -> Table:
    rows = [[str(k), f"{b:,.0f}", f"{b / k:,.1f}"] for k, b in sorted(result.pool_bytes.items())]
    if result.error is not None:
        rows = [[NA, NA, NA]]
    notes = [
        "tracemalloc snapshots before/after building a pool of k fake connections, minus "
        f"k x one fake connection's own size ({result.fake_bytes:,.0f} B).",
    ]
    if result.marginal is not None:
        notes.append(
            f"Marginal cost: {result.marginal:,.1f} B per extra connection; "
            f"fixed cost: {fmt(result.fixed, 0)} B per pool."
        )
    if result.error:
        notes.append(f"n/a: {result.error}")
    return Table(
        "6. Memory: pool bookkeeping per connection (fake driver)",
        ["connections", "pool bytes", "bytes/connection"],
        rows,
        notes,
    )


def targets_table(checks: list[Check]) -> Table:
    rows = [[c.verdict, c.scenario, c.subject, c.target, c.measured] for c in checks]
    return Table("Targets", ["Result", "Scenario", "Subject", "Target", "Measured"], rows)


def summary_line(checks: list[Check]) -> str:
    passed = sum(c.ok is True for c in checks)
    missed = sum(c.ok is False for c in checks)
    na = sum(c.ok is None for c in checks)
    return f"Targets: {passed} PASS, {missed} MISS, {na} n/a (of {len(checks)})"


ASYNC_BEGIN = "<!-- async scenario: begin -->"
ASYNC_END = "<!-- async scenario: end -->"


def async_section(tables: list[Table], checks: list[Check], heading: str) -> str:
    """The `async` scenario's tables and its own targets, between markers so a
    later `--scenario async` run can replace just this part of the report."""
    lines = [ASYNC_BEGIN, "## Async pools (asyncio)", "", heading, ""]
    for table in tables:
        lines += [render_section(table), ""]
    lines += [f"**Async {summary_line(checks)}**", "", ASYNC_END]
    return "\n".join(lines)


INSTRUCTIONS_BEGIN = "<!-- instructions scenario: begin -->"
INSTRUCTIONS_END = "<!-- instructions scenario: end -->"


def instructions_section(table: Table, checks: list[Check], heading: str) -> str:
    """The `instructions` scenario's table (its targets in its own columns),
    between markers so a later `--scenario instructions` run can replace it."""
    lines = [INSTRUCTIONS_BEGIN, "## Hot paths in instructions (callgrind)", "", heading, ""]
    lines += [render_section(table), "", f"**Instruction {summary_line(checks)}**", "", INSTRUCTIONS_END]
    return "\n".join(lines)


def splice_async(existing: str, section: str) -> str:
    """Put `section` in place of the marked async part of an existing report;
    without one, before its Targets table (or at the end). Nothing else changes."""
    return splice(existing, section, ASYNC_BEGIN, ASYNC_END)


def splice_instructions(existing: str, section: str) -> str:
    """``splice_async`` for the marked instructions part."""
    return splice(existing, section, INSTRUCTIONS_BEGIN, INSTRUCTIONS_END)


def splice(existing: str, section: str, begin_marker: str, end_marker: str) -> str:
    begin, end = existing.find(begin_marker), existing.find(end_marker)
    if begin != -1 and end > begin:
        return existing[:begin] + section + existing[end + len(end_marker) :]
    anchor = existing.find("\n### Targets\n")
    if anchor == -1:
        return existing.rstrip("\n") + "\n\n" + section + "\n"
    return existing[: anchor + 1] + section + "\n\n" + existing[anchor + 1 :]


def document(
    machine: list[tuple[str, str]],
    settings: Settings,
    quick: bool,
    tables: list[Table],
    checks: list[Check],
    charts: list[tuple[str, str]],
    async_part: str | None = None,
    instructions_part: str | None = None,
) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python benchmarks/run.py"
        + (" --quick" if quick else "")
        + "`: every pool runs in one process against the same server, one after another.",
        "",
        "## Machine",
        "",
        *(f"- {name}: {value}" for name, value in machine),
        "",
        f"Settings: {settings}",
        "",
        "## Results",
        "",
    ]
    for caption, path in charts:
        lines += [f"![{caption}]({path})", ""]
    if not charts:
        lines += ["(No charts: matplotlib, in the `bench` extra, is not installed.)", ""]
    for table in tables:
        lines += [render_section(table), ""]
    for part in (async_part, instructions_part):
        if part is not None:
            lines += [part, ""]
    lines += [render_section(targets_table(checks)), "", f"**{summary_line(checks)}**", ""]
    return "\n".join(lines)
