"""Run the side-by-side benchmark: ``python benchmarks/run.py [--quick] ...``.

Importable too: ``benchmarks.run.main(argv, progress=callback)`` returns an
exit code, so a ``pymysqlpool bench`` command can wrap it.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run as a script: make the `benchmarks` package importable, and keep this
    # folder off sys.path so its module names cannot shadow anything.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import dataclasses
import datetime
import os
import platform
import secrets
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

import pymysql

from benchmarks import async_scenarios, charts, connect, instructions, report, scenarios, targets
from benchmarks.common import Check, Progress, Server, Settings, Table
from benchmarks.peers import DEFAULT_CACHE, REPO_ROOT, Subject, discover

SCENARIOS = (
    "overhead", "query", "roundtrips", "contention", "bookkeeping", "memory", "connect", "async", "instructions"
)  # fmt: skip
BENCH_USER_PREFIX = "pymysqlpool_bench_"


def bench_account() -> tuple[str, str]:
    """A user name of its own for this run (two runs on one server must not
    clobber each other's account) and a random password. 32 characters at most:
    MySQL's limit."""
    return BENCH_USER_PREFIX + secrets.token_hex(6), secrets.token_urlsafe(18)


def _stderr_progress(message: str, done: int, total: int) -> None:
    print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Benchmark pymysqlpool against raw PyMySQL and other pools.",
    )
    p.add_argument("--quick", action="store_true", help="fewer cycles, 1 s contention runs")
    p.add_argument(
        "--scenario",
        action="extend",
        nargs="+",
        choices=SCENARIOS,
        metavar="NAME",
        help=f"run only these: {', '.join(SCENARIOS)}",
    )
    p.add_argument(
        "--out",
        help="Markdown report path (PNG charts go to img/ beside it); default docs/benchmarks.md",
    )
    p.add_argument("--no-out", action="store_true", help="print tables only, write no files")
    p.add_argument(
        "--write-docs",
        action="store_true",
        help="with --quick: rewrite docs/benchmarks.md and its charts anyway (a quick run prints tables only)",
    )
    p.add_argument("--host", default=env("PYMYSQLPOOL_BENCH_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env("PYMYSQLPOOL_BENCH_PORT", "3306")))
    p.add_argument(
        "--user",
        default=env("PYMYSQLPOOL_BENCH_USER", "root"),
        help="admin login; needs PROCESS and, for the dedicated pool user, CREATE USER",
    )
    p.add_argument("--password", default=env("PYMYSQLPOOL_BENCH_PASSWORD", ""))
    p.add_argument("--database", default=env("PYMYSQLPOOL_BENCH_DATABASE", "test"))
    p.add_argument(
        "--no-bench-user",
        action="store_true",
        help="pools log in as the admin user (server connections then counted with Threads_connected)",
    )
    p.add_argument("--rounds", type=int, help="overhead timing rounds per subject (≥5)")
    p.add_argument("--cycles", type=int, help="cycles per round in the overhead scenario")
    p.add_argument("--duration", type=float, help="seconds per contention run")
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="where the 0.5.0 wheel is")
    p.add_argument("--strict", action="store_true", help="exit 1 if any target is missed")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p.parse_args(argv)


def output_path(args: argparse.Namespace) -> Path | None:
    """Where the report goes, if anywhere: a quick run's 1-second numbers never
    replace the tracked docs/benchmarks.md unless --write-docs (or --out) says so."""
    if args.no_out:
        return None
    if args.out:
        return Path(args.out)
    if args.quick and not args.write_docs:
        return None
    return REPO_ROOT / "docs" / "benchmarks.md"


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.quick() if args.quick else Settings()
    changes: dict[str, Any] = {}
    if args.rounds is not None:
        changes["rounds"] = max(5, args.rounds)
    if args.cycles is not None:
        changes["overhead_cycles"] = max(1, args.cycles)
    if args.duration is not None:
        changes["duration_s"] = max(0.1, args.duration)
    return dataclasses.replace(settings, **changes)


def _pool_login(admin: Any, server: Server, use_bench_user: bool) -> tuple[dict[str, Any], scenarios.ConnCounter, str]:
    """Give the pools a user of their own so their server connections can be told apart."""
    if use_bench_user:
        user, password = bench_account()
        try:
            cur = admin.cursor()
            cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
            try:
                cur.execute(f"GRANT ALL ON `{server.database}`.* TO %s@'%%'", (user,))
                kwargs = server.kwargs(user=user, password=password)
                pymysql.connect(**kwargs).close()
            except BaseException:
                _drop_bench_user(server, user)
                raise
            return kwargs, scenarios.ConnCounter(user), user
        except pymysql.MySQLError as exc:
            print(f"note: no dedicated pool user ({exc}); using {server.user}", file=sys.stderr)
    return server.kwargs(), scenarios.ConnCounter(None), server.user


def _drop_bench_user(server: Server, user: str) -> None:
    try:
        conn = pymysql.connect(**server.kwargs())
        try:
            conn.cursor().execute("DROP USER IF EXISTS %s@'%%'", (user,))
        finally:
            conn.close()
    except pymysql.MySQLError as exc:
        print(f"note: could not drop the benchmark user {user!r}: {exc}", file=sys.stderr)


def _revision() -> str:
    """The checkout being measured; results from uncommitted src/ changes say so."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "src"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "?"
    return head + (" with uncommitted changes in src/" if dirty else "")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "model unknown"


def _machine(admin: Any, subjects: list[Subject], pool_user: str) -> list[tuple[str, str]]:
    cur = admin.cursor()
    cur.execute("SELECT VERSION()")
    server_version = str(cur.fetchone()[0])
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    info = [
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("platform", platform.platform()),
        ("CPUs", f"{os.cpu_count()} ({_cpu_model()})"),
        ("load average at start", load),
        ("Python", platform.python_version() + f" ({platform.python_implementation()})"),
        # pymysql.__version__ is a MySQLdb-compatibility value, not the release.
        ("repository", _revision()),
        ("PyMySQL", getattr(pymysql, "VERSION_STRING", None) or pymysql.__version__),
        ("server", f"{server_version} (pools log in as `{pool_user}`)"),
    ]
    seen: set[str] = set()
    for s in subjects:
        if s.is_pool:
            name = s.label.split(" (")[0].replace(" get_conn/release", "")
            name = name.replace(" with connection()", "")
            if name not in seen:
                seen.add(name)
                info.append((name, s.version if s.available else f"n/a ({s.missing})"))
    return info


def _stamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def machine_load(machine: list[tuple[str, str]]) -> str:
    return dict(machine).get("load average at start", "?")


def _scenario_progress(progress: Progress, name: str, done: int, total: int) -> Callable[[str], None]:
    def say(message: str) -> None:
        progress(f"{name}: {message}", done, total)

    return say


def main(argv: Sequence[str] | None = None, progress: Progress | None = None) -> int:
    args = parse_args(argv)
    if progress is None:
        progress = _stderr_progress if not args.quiet else (lambda m, d, t: None)
    settings = _settings(args)
    selected = [name for name in SCENARIOS if not args.scenario or name in args.scenario]
    server = Server(args.host, args.port, args.user, args.password, args.database)
    try:
        admin = pymysql.connect(**server.kwargs())
    except pymysql.MySQLError as exc:
        print(f"cannot reach the server at {server.host}:{server.port}: {exc}", file=sys.stderr)
        return 2

    total = len(selected)
    progress("loading pools", 0, total)
    subjects = discover(Path(args.cache_dir))
    try:
        pool_kwargs, counter, pool_user = _pool_login(admin, server, not args.no_bench_user)
    except BaseException:
        admin.close()
        raise
    tables: list[Table] = []
    checks: list[Check] = []
    results: dict[str, Any] = {}
    async_part: str | None = None
    async_checks: list[Check] = []
    instructions_part: str | None = None
    instruction_checks: list[Check] = []

    def emit(new_tables: list[Table], new_checks: list[Check]) -> None:
        tables.extend(new_tables)
        checks.extend(new_checks)
        for table in new_tables:
            print(report.render_section(table) + "\n", flush=True)

    try:  # from here on the run's account is dropped however the run ends
        try:
            machine = _machine(admin, subjects, pool_user)
        finally:
            admin.close()
        for done, name in enumerate(selected):
            say = _scenario_progress(progress, name, done, total)
            say("start")
            ctx = scenarios.Context(server, pool_kwargs, settings, subjects, counter, say)
            if name == "overhead":
                r1 = results[name] = scenarios.run_overhead(ctx)
                c = targets.overhead_checks(r1, subjects)
                emit([report.overhead_table(r1, subjects, c)], c)
            elif name == "query":
                r2 = results[name] = scenarios.run_query(ctx)
                c = targets.query_checks(r2, subjects)
                emit([report.query_table(r2, subjects, c)], c)
            elif name == "roundtrips":
                r3 = scenarios.run_round_trips(ctx)
                c = targets.trip_checks(r3, subjects)
                emit([report.trips_table(r3, subjects, c)], c)
            elif name == "contention":
                r4 = results[name] = scenarios.run_contention(ctx)
                c = targets.contention_checks(r4, subjects)
                emit(report.contention_tables(r4, subjects, c), c)
            elif name == "bookkeeping":
                r5 = scenarios.run_bookkeeping(ctx)
                c = targets.bookkeeping_checks(r5, subjects)
                emit([report.bookkeeping_table(r5, c)], c)
            elif name == "memory":
                emit([report.memory_table(scenarios.run_memory(ctx))], [])
            elif name == "connect":
                r7 = connect.run_connect(ctx)
                c = connect.connect_checks(r7)
                emit(connect.connect_tables(r7, c), c)
            elif name == "instructions":
                if not instructions.available():
                    say("valgrind is not installed: skipped")
                    continue
                n1, n2 = (300, 1300) if args.quick else (1000, 5000)
                r9 = instructions.measure(server.kwargs(), list(instructions.BY_NAME), n1, n2, say)
                instruction_checks = instructions.checks(r9)
                table9 = instructions.table(r9, n1, n2, instruction_checks)
                print(report.render_section(table9) + "\n", flush=True)
                heading = (
                    f"Measured {_stamp()} by `python benchmarks/run.py --scenario instructions"
                    + (" --quick" if args.quick else "")
                    + f"` at {_revision()}: instruction counts do not depend on the machine's load."
                )
                instructions_part = report.instructions_section(table9, instruction_checks, heading)
            elif name == "async":
                r8 = async_scenarios.run_async(ctx)
                async_checks = async_scenarios.checks(r8)
                new = [*async_scenarios.tables(r8, async_checks), async_scenarios.targets_table(async_checks)]
                for table in new:
                    print(report.render_section(table) + "\n", flush=True)
                heading = (
                    f"Measured {_stamp()} by `python benchmarks/run.py --scenario async"
                    + (" --quick" if args.quick else "")
                    + f"` at {_revision()} (load average at start: {machine_load(machine)}); settings: {settings}."
                )
                async_part = report.async_section(new, async_checks, heading)
    finally:
        if counter.user is not None:
            _drop_bench_user(server, counter.user)
    progress("done", total, total)

    every_check = checks + async_checks + instruction_checks
    print(report.render_section(report.targets_table(every_check)) + "\n")
    print(report.summary_line(every_check))
    out = output_path(args)
    if out is None and args.quick and not args.no_out:
        print("quick run: tables only; --write-docs rewrites docs/benchmarks.md with these numbers", file=sys.stderr)
    if out is not None:
        if set(selected) <= {"async", "instructions"} and out.exists():
            # Only the scenarios with a part of their own ran: replace those parts,
            # keep every other row of the report.
            text = out.read_text(encoding="utf-8")
            if async_part is not None:
                text = report.splice_async(text, async_part)
            if instructions_part is not None:
                text = report.splice_instructions(text, instructions_part)
            out.write_text(text, encoding="utf-8")
            print(f"updated the {' and '.join(selected)} section of {out}", file=sys.stderr)
        else:
            drawn = charts.write(
                out, subjects, results.get("overhead"), results.get("query"), results.get("contention")
            )
            text = report.document(machine, settings, args.quick, tables, checks, drawn, async_part, instructions_part)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
            print(f"wrote {out}" + "".join(f", {out.parent / path}" for _, path in drawn), file=sys.stderr)
    return 1 if args.strict and any(c.ok is False for c in every_check) else 0


if __name__ == "__main__":
    sys.exit(main())
