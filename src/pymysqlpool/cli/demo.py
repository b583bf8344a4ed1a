"""``pymysqlpool demo``: many threads, one pool, transactions that commit or
roll back, and a check afterwards that the database holds exactly the
committed rows.

Every row gets a token chosen here, so the demo knows which rows must be in
the table (committed) and which must not (rolled back). A side connection,
not from the pool, samples the server's process list to show that the pool
never had more than ``maxsize`` connections open.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set

import pymysql

from ..pool import ConnectionPool
from ..stats import CLOSE_REASONS, COUNTERS, GAUGES
from .output import Progress, describe_error, format_table, print_error
from .settings import (
    ConnectionSettings,
    PoolSettings,
    UsageError,
    add_pool_arguments,
    pool_settings,
    positive_int,
    resolve,
    seconds,
)

__all__ = ["run"]

HELP = "run a concurrent transactional workload through one pool and verify the result"
DESCRIPTION = """\
Create a table, run a concurrent workload through one pool (each operation
borrows a connection, opens a transaction, inserts rows, then commits or rolls
back in one of three ways, or reads), print the pool's statistics, and verify:
every committed row is in the table, no rolled-back row is, every read saw
exactly its thread's committed rows, and the server never saw more than
--maxsize connections from the pool. The table is dropped at the end."""
EPILOG = """\
kinds of operation:
  commit    BEGIN, INSERT 1-3 rows, COMMIT
  raise     BEGIN, INSERT, then an exception leaves `with pool.connection()`:
            the pool rolls back
  abandon   BEGIN, INSERT, then the `with` block ends without COMMIT:
            the pool sees the open transaction and rolls back
  rollback  BEGIN, INSERT, ROLLBACK by the caller
  read      SELECT COUNT(*) of this thread's rows
The progress line counts "rolled back": raise + abandon + rollback together;
the final table shows each kind and that total.

output: the header first, progress on stderr, then the summary on stdout.
Ctrl-C stops the workload and prints the summary so far (exit status 130);
when the reader of stdout goes away (`| head`), the demo ends quietly.

exit status:
  0    every verification passed ("RESULT: PASS" is the last stdout line)
  1    a verification failed ("RESULT: FAIL"), or cannot connect or create the
       table (one line on stderr)
  2    usage error
  130  interrupted (the summary so far is printed, the table still dropped)"""

TABLE_PREFIX = "pymysqlpool_demo_"
KINDS = ("commit", "raise", "abandon", "rollback", "read")
WEIGHTS = (40, 15, 15, 10, 20)
_MAX_ERRORS = 50  # stop early when the server is clearly gone
_SAMPLE_EVERY = 0.02
# Closes of idle connections only: none of them was a return the pool could have rolled back.
_IDLE_CLOSES = ("closed_idle", "closed_failed_check")
_GRACE = 5.0  # after Ctrl-C, how long workers get to finish their current operation


class _DeliberateRollback(Exception):
    """Raised inside ``with pool.connection()`` to make the pool roll back."""


@dataclass
class Ledger:
    """What one worker did; only that worker writes it."""

    worker: int
    committed: List[int] = field(default_factory=list)
    rolled_back: List[int] = field(default_factory=list)
    uncertain: List[int] = field(default_factory=list)  # an error hit before we knew
    kinds: Counter[str] = field(default_factory=Counter)
    reads_checked: int = 0
    read_mismatches: List[str] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)

    @property
    def ops(self) -> int:
        return sum(self.kinds.values())


class _Budget:
    """Hands out operations until a count or a deadline is reached."""

    def __init__(self, ops: Optional[int], deadline: Optional[float], stop: threading.Event) -> None:
        self._left = ops
        self._deadline = deadline
        self._stop = stop
        self._lock = threading.Lock()

    def take(self) -> bool:
        if self._stop.is_set():
            return False
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return False
        if self._left is None:
            return True
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True


class _Crew:
    """The worker threads, and how many are still in the workload.

    Each worker says itself when it is done: ``Thread.is_alive()`` cannot be
    trusted after a ``join()`` that Ctrl-C interrupted (CPython before 3.13
    then marks a running thread stopped), and a demo that believed it would
    read the pool's stats while a worker still holds a connection.
    """

    def __init__(self) -> None:
        self._done = threading.Condition()
        self._running = 0

    def start(self, name: str, target: Callable[..., None], *args: Any) -> None:
        with self._done:
            self._running += 1  # counted first: an interrupt here errs on "still running"
        threading.Thread(target=self._run, args=(target, *args), name=name, daemon=True).start()

    def _run(self, target: Callable[..., None], *args: Any) -> None:
        try:
            target(*args)
        finally:
            with self._done:
                self._running -= 1
                self._done.notify_all()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every worker to finish; True if they have."""
        with self._done:
            return self._done.wait_for(lambda: self._running == 0, max(timeout, 0.0))

    @property
    def finished(self) -> bool:
        with self._done:
            return self._running == 0


class _Monitor:
    """Samples the pool's server connections from a connection of its own."""

    def __init__(self, settings: ConnectionSettings, pool_ids: Callable[[], Set[int]], pool: ConnectionPool) -> None:
        self._conn = pymysql.connect(**settings.connect_kwargs(), autocommit=True)
        self._ids = pool_ids
        self._pool = pool
        self._stop = threading.Event()
        self.samples = 0
        self.peak = 0
        self.current = 0
        self.client_peak = 0  # the pool's own open + connecting
        self.error: Optional[str] = None
        self._password = settings.password
        self._thread = threading.Thread(target=self._run, name="pymysqlpool-demo-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)
        try:
            self._conn.close()
        except Exception:
            pass

    def sample(self) -> None:
        stats = self._pool.get_stats()
        self.client_peak = max(self.client_peak, int(stats["open"]) + int(stats["connecting"]))
        with self._conn.cursor() as cur:
            cur.execute("SELECT ID FROM information_schema.PROCESSLIST")
            live = {int(row[0]) for row in cur.fetchall()}
        self.current = len(live & self._ids())
        self.peak = max(self.peak, self.current)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception as exc:
                self.error = describe_error(exc, self._password)
                return
            self._stop.wait(_SAMPLE_EVERY)


@dataclass(frozen=True)
class Check:
    ok: Optional[bool]  # None: skipped
    text: str


def add_parser(subparsers: Any, parents: List[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        parents=parents,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    work = parser.add_argument_group("workload")
    work.add_argument("--threads", metavar="N", type=positive_int, default=16, help="worker threads (default: 16)")
    amount = work.add_mutually_exclusive_group()
    amount.add_argument("--seconds", metavar="S", type=seconds, default=None, help="run for this long (default: 5)")
    amount.add_argument("--ops", metavar="N", type=positive_int, default=None, help="run exactly N operations in all")
    work.add_argument("--seed", metavar="N", type=int, default=None, help="random seed for the mix of operations")
    work.add_argument("--table", metavar="NAME", default=None, help=f"table to create (default: {TABLE_PREFIX}<pid>)")
    work.add_argument("--keep", action="store_true", help="keep the table afterwards")
    work.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    add_pool_arguments(parser, maxsize=8)
    parser.set_defaults(run=run)


def _valid_table(name: str) -> str:
    if not name or len(name) > 64 or not all(c.isalnum() or c == "_" for c in name):
        raise UsageError(f"--table: use letters, digits and _ only (at most 64), got {name!r}")
    return name


def run(args: argparse.Namespace) -> int:
    settings = resolve(args, os.environ)
    pool_cfg = pool_settings(args)
    table = _valid_table(args.table or f"{TABLE_PREFIX}{os.getpid()}")
    duration = 5.0 if args.seconds is None and args.ops is None else args.seconds
    return Demo(settings, pool_cfg, table, args, duration).run()


class Demo:
    def __init__(
        self,
        settings: ConnectionSettings,
        pool_cfg: PoolSettings,
        table: str,
        args: argparse.Namespace,
        duration: Optional[float],
    ) -> None:
        self.settings = settings
        self.pool_cfg = pool_cfg
        self.table = table
        self.threads = args.threads
        self.ops = args.ops
        self.duration = duration
        self.keep = args.keep
        self.seed = args.seed if args.seed is not None else random.randrange(1 << 30)
        self.progress = Progress(enabled=not args.quiet)
        self.stop = threading.Event()
        self._pool_ids: Set[int] = set()
        self._ids_lock = threading.Lock()
        self._crew = _Crew()

    # -- set-up and tear-down ----------------------------------------------------

    def _sql(self, statement: str, conn: Any = None) -> List[Any]:
        """Run one statement on ``conn``, else on a connection of its own (never the pool's)."""
        own = conn is None
        if own:
            conn = pymysql.connect(**self.settings.connect_kwargs(), autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                return list(cur.fetchall())
        finally:
            if own:
                conn.close()

    def _error(self, message: str) -> int:
        print_error("demo", message)
        return 1

    def run(self) -> int:
        create = (
            f"CREATE TABLE `{self.table}` ("
            " token BIGINT NOT NULL PRIMARY KEY,"
            " worker INT NOT NULL,"
            " kind VARCHAR(8) NOT NULL,"
            " KEY by_worker (worker)"
            ") ENGINE=InnoDB"
        )
        try:
            conn = pymysql.connect(**self.settings.connect_kwargs(), autocommit=True)
        except pymysql.MySQLError as exc:
            reason = describe_error(exc, self.settings.password)
            return self._error(f"cannot connect to {self.settings.where}: {reason}")
        try:
            self._sql(create, conn)
        except pymysql.MySQLError as exc:
            # Table exists or no privilege: either way, never drop a table we did not make.
            reason = describe_error(exc, self.settings.password)
            return self._error(f"cannot create table {self.table!r}: {reason} (choose another with --table)")
        finally:
            conn.close()
        try:
            return self._run_with_table()
        finally:
            if not self.keep:
                self._drop()

    def _drop(self) -> None:
        try:
            self._sql(f"DROP TABLE IF EXISTS `{self.table}`")
        except pymysql.MySQLError as exc:
            print_error("demo", f"could not drop table {self.table!r}: {describe_error(exc, self.settings.password)}")

    # -- the workload --------------------------------------------------------------

    def _record_id(self, raw: Any) -> None:
        # configure= runs once per new connection: remember its server thread id.
        with self._ids_lock:
            self._pool_ids.add(int(raw.thread_id()))

    def _known_ids(self) -> Set[int]:
        with self._ids_lock:
            return set(self._pool_ids)

    def _header(self) -> str:
        return (
            f"pymysqlpool demo: {self.threads} threads, one pool ({self.pool_cfg.describe()}),"
            f" table {self.table}, {self.settings.describe()}"
        )

    def _run_with_table(self) -> int:
        print(self._header(), flush=True)
        try:
            pool = ConnectionPool(
                name="pymysqlpool-demo",
                configure=self._record_id,
                **self.pool_cfg.pool_kwargs(),
                **self.settings.connect_kwargs(),
            )
        except (TypeError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        ledgers = [Ledger(worker=i) for i in range(self.threads)]
        interrupted = False
        try:
            monitor = _Monitor(self.settings, self._known_ids, pool)
            monitor.start()
            started = time.monotonic()
            try:
                settled = self._drive(pool, ledgers, monitor, started)
            except KeyboardInterrupt:
                interrupted = True
                settled = self._crew.finished
            finally:
                elapsed = time.monotonic() - started
                monitor.stop()
            stats = pool.get_stats()
        finally:
            pool.close()
        if settled:
            present = {int(row[0]) for row in self._sql(f"SELECT token FROM `{self.table}`")}
            checks = self._verify(ledgers, present, stats, monitor)
        else:
            checks = [Check(None, "not verified: some threads were still in an operation when the demo stopped")]
        self._report(ledgers, stats, checks, elapsed, interrupted)
        if interrupted:
            print_error("demo", "interrupted")
            return 130
        return 0 if all(c.ok is not False for c in checks) else 1

    def _drive(self, pool: ConnectionPool, ledgers: List[Ledger], monitor: _Monitor, started: float) -> bool:
        """Run the workload; True when every worker has finished. On any
        exception (Ctrl-C, a broken pipe on stderr) the workers are stopped
        first: they finish their current operation, for at most 5 s."""
        deadline = started + self.duration if self.duration is not None else None
        budget = _Budget(self.ops, deadline, self.stop)
        crew = self._crew
        try:
            for ledger in ledgers:
                rng = random.Random(self.seed * 1000 + ledger.worker)
                crew.start(f"pymysqlpool-demo-{ledger.worker}", self._work, pool, ledger, budget, rng)
            while not crew.wait(self.progress.interval):
                self.progress.update(self._status(pool, ledgers, monitor, started))
        except BaseException:
            self.stop.set()
            # Workers finish their current operation; a borrower still queued
            # gets PoolClosed when the caller closes the pool.
            crew.wait(_GRACE)
            with contextlib.suppress(Exception):
                self.progress.done()
            raise
        self.progress.update(self._status(pool, ledgers, monitor, started), force=True)
        self.progress.done()
        return True

    def _status(self, pool: ConnectionPool, ledgers: List[Ledger], monitor: _Monitor, started: float) -> str:
        elapsed = time.monotonic() - started
        ops = sum(ledger.ops for ledger in ledgers)
        total: Counter[str] = Counter()
        for ledger in ledgers:
            total.update(ledger.kinds)
        stats = pool.get_stats()
        errors = sum(len(ledger.errors) for ledger in ledgers)
        return (
            f"demo {elapsed:4.1f}s ops {ops} ({ops / max(elapsed, 1e-9):.0f}/s)"
            f" commit {total['commit']} rolled back {_rolled_back(total)} read {total['read']} errors {errors}"
            f" | pool open {stats['open']}/{self.pool_cfg.maxsize} busy {stats['borrowed']} queued {stats['waiting']}"
            f" | server {monitor.current}"
        )

    def _work(self, pool: ConnectionPool, ledger: Ledger, budget: _Budget, rng: random.Random) -> None:
        seq = 0
        while budget.take():
            kind = rng.choices(KINDS, WEIGHTS)[0]
            seq += 1
            # Unique per worker, operation and row: (worker, seq, row) packed.
            tokens = [(ledger.worker << 40) | (seq << 3) | row for row in range(rng.randint(1, 3))]
            try:
                self._operation(pool, ledger, kind, tokens)
            except Exception as exc:
                if kind != "read":
                    ledger.uncertain.extend(tokens)
                ledger.errors.append(f"{kind}: {describe_error(exc, self.settings.password)}")
                if len(ledger.errors) >= _MAX_ERRORS:
                    self.stop.set()
            ledger.kinds[kind] += 1

    def _operation(self, pool: ConnectionPool, ledger: Ledger, kind: str, tokens: List[int]) -> None:
        insert = f"INSERT INTO `{self.table}` (token, worker, kind) VALUES (%s, %s, %s)"
        rows = [(token, ledger.worker, kind) for token in tokens]
        if kind == "read":
            with pool.connection() as conn, conn.cursor() as cur:
                cur.execute(f"SELECT COUNT(*) FROM `{self.table}` WHERE worker = %s", (ledger.worker,))
                (seen,) = cur.fetchone()
            low, high = len(ledger.committed), len(ledger.committed) + len(ledger.uncertain)
            ledger.reads_checked += 1
            if not low <= seen <= high:
                ledger.read_mismatches.append(f"worker {ledger.worker} saw {seen} rows, committed {low}")
            return
        if kind == "raise":
            try:
                with pool.connection() as conn:
                    conn.begin()
                    with conn.cursor() as cur:
                        cur.executemany(insert, rows)
                    raise _DeliberateRollback
            except _DeliberateRollback:
                ledger.rolled_back.extend(tokens)
            return
        with pool.connection() as conn:
            conn.begin()
            with conn.cursor() as cur:
                cur.executemany(insert, rows)
            if kind == "commit":
                conn.commit()
            elif kind == "rollback":
                conn.rollback()
            # "abandon": leave the block with the transaction open.
        (ledger.committed if kind == "commit" else ledger.rolled_back).extend(tokens)

    # -- verification and report ------------------------------------------------------

    def _verify(
        self, ledgers: List[Ledger], present: Set[int], stats: Dict[str, Any], monitor: _Monitor
    ) -> List[Check]:
        committed = {t for ledger in ledgers for t in ledger.committed}
        rolled_back = {t for ledger in ledgers for t in ledger.rolled_back}
        uncertain = {t for ledger in ledgers for t in ledger.uncertain}
        errors = [e for ledger in ledgers for e in ledger.errors]
        mismatches = [m for ledger in ledgers for m in ledger.read_mismatches]
        reads = sum(ledger.reads_checked for ledger in ledgers)
        missing = committed - present
        resurrected = rolled_back & present
        strangers = present - committed - rolled_back - uncertain
        maxsize = self.pool_cfg.maxsize
        checks = [
            Check(
                not missing,
                f"committed rows present: {len(committed) - len(missing)} of {len(committed)}",
            ),
            Check(
                not resurrected,
                f"rolled-back rows absent: {len(resurrected)} of {len(rolled_back)} found in the table",
            ),
            Check(not strangers, f"no other rows in the table: {len(strangers)} unexpected"),
            Check(
                not mismatches,
                f"each read saw exactly its thread's committed rows: {reads - len(mismatches)} of {reads}"
                + (f" (first mismatch: {mismatches[0]})" if mismatches else ""),
            ),
        ]
        if monitor.error is not None or monitor.samples == 0:
            checks.append(Check(None, f"server connections not sampled: {monitor.error or 'no sample taken'}"))
        else:
            checks.append(
                Check(
                    monitor.peak <= maxsize,
                    f"server connections from the pool never exceeded maxsize: peak {monitor.peak} of {maxsize}"
                    f" ({monitor.samples} samples of the process list; pool's own count peaked at"
                    f" {monitor.client_peak})",
                )
            )
        borrows, returns = int(stats["borrows"]), int(stats["returns"])
        checks.append(
            Check(borrows == returns, f"every borrowed connection was given back: borrows {borrows}, returns {returns}")
        )
        pool_rollbacks = int(stats["rollbacks_on_return"])
        expected = sum(ledger.kinds["raise"] + ledger.kinds["abandon"] for ledger in ledgers)
        closed = [reason for reason in CLOSE_REASONS if reason not in _IDLE_CLOSES and stats[reason]]
        if errors or closed:
            # A returned connection that was closed, not reset, was never rolled back by the pool.
            why = f"connections were closed ({', '.join(closed)})" if closed else "operations failed"
            checks.append(Check(None, f"pool rollbacks on return not compared: {why}"))
        else:
            checks.append(
                Check(
                    pool_rollbacks == expected,
                    f"the pool rolled back every transaction left open: rollbacks_on_return {pool_rollbacks},"
                    f" raise + abandon operations {expected}",
                )
            )
        checks.append(
            Check(
                not errors,
                f"no unexpected errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""),
            )
        )
        return checks

    def _report(
        self, ledgers: List[Ledger], stats: Dict[str, Any], checks: List[Check], elapsed: float, interrupted: bool
    ) -> None:
        out: Callable[..., None] = print  # the header was printed when the demo started
        total: Counter[str] = Counter()
        for ledger in ledgers:
            total.update(ledger.kinds)
        ops = sum(total.values())
        out(f"{ops} operations in {elapsed:.1f} s ({ops / max(elapsed, 1e-9):.0f}/s), seed {self.seed}")
        if interrupted:
            out("interrupted: the summary so far")
        elif self.stop.is_set():
            out(f"stopped early: a thread hit {_MAX_ERRORS} errors")
        out()
        rows: List[Any] = [(kind, total[kind]) for kind in KINDS]
        rows.append(("rolled back (raise + abandon + rollback)", _rolled_back(total)))
        out(format_table(("operation", "count"), rows, right=(1,)))
        out()
        stat_rows = [(key, _fmt(stats[key]), GAUGES[key]) for key in GAUGES if key in stats]
        stat_rows += [(key, _fmt(stats[key]), COUNTERS[key]) for key in COUNTERS if key in stats]
        out("pool.get_stats() after the run:")
        out(format_table(("stat", "value", "meaning"), stat_rows, right=(1,)))
        out()
        out("verification:")
        for check in checks:
            mark = "SKIP" if check.ok is None else ("PASS" if check.ok else "FAIL")
            out(f"  {mark}  {check.text}")
        passed = all(c.ok is not False for c in checks)
        out("RESULT: PASS" if passed else "RESULT: FAIL")


def _rolled_back(total: Counter[str]) -> int:
    """Operations whose transaction was rolled back, by the pool or by the caller."""
    return total["raise"] + total["abandon"] + total["rollback"]


def _fmt(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)
