"""``pymysqlpool check``: can we connect, and do the pool settings fit the server?"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, List, Optional, Tuple

from ..pool import ConnectionPool
from . import cluster_check
from .cluster_check import is_cluster_url
from .output import describe_error, print_error
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

__all__ = ["ServerFacts", "assess", "run"]

HELP = "connect, measure the round trip and check the pool settings against the server"
DESCRIPTION = """\
Connect through a pool built with the given settings, print the server
version, the round-trip time of SELECT 1 (median of several), the server's
wait_timeout, max_connections and Threads_connected, and a WARN line for each
pool setting that does not fit the server."""
EPILOG = """\
exit status:
  0    connected (WARN lines may still be printed)
  1    cannot connect, or a query failed (one line on stderr)
  2    usage error

Each warning is one stdout line starting with "WARN "; the last line is "OK"
or "OK (N warnings)". --json prints one JSON object instead.

With a URL naming several hosts (mysql://u:pw@h1:p1,h2:p2,h3:p3/db) it
prints the cluster's topology instead: each node's role, read_only, lag,
GTID, wsrep state and answer time, and warns on no primary, split brain,
stopped replication, lag beyond --max-lag and nodes that do not answer."""

# Leave the server at least this share of its free connection slots.
_SHARE_OF_FREE_SLOTS = 0.8
# Below this many seconds of wait_timeout, borrowed-but-unused connections are at risk.
_SHORT_WAIT_TIMEOUT = 60.0
# The pool's default keep-alive interval (ConnectionPool keepalive_interval=60.0).
_DEFAULT_KEEPALIVE = 60.0


@dataclass(frozen=True)
class ServerFacts:
    version: str
    wait_timeout: float
    max_connections: int
    max_user_connections: int
    threads_connected: int
    pool_open: int  # of threads_connected, how many are this check's own pool


def add_parser(subparsers: Any, parents: List[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "check",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        parents=parents,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--samples", metavar="N", type=positive_int, default=5, help="SELECT 1 round trips to time (default: 5)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument(
        "--max-lag",
        metavar="SECONDS",
        type=seconds,
        default=5.0,
        help="with a cluster URL (h1:p1,h2:p2): warn about replicas lagging more (default: 5)",
    )
    add_pool_arguments(parser, maxsize=100)
    parser.set_defaults(run=run)


def assess(pool: PoolSettings, facts: ServerFacts) -> List[str]:
    """The warnings for these pool settings on this server (pure: unit-testable)."""
    warnings: List[str] = []
    wait = facts.wait_timeout
    keepalive = min(_DEFAULT_KEEPALIVE, wait / 2.0) if wait else _DEFAULT_KEEPALIVE
    if wait and (pool.lifetime == 0 or pool.lifetime >= wait):
        lifetime = "unlimited" if pool.lifetime == 0 else f"{pool.lifetime:g} s"
        warnings.append(
            f"con_lifetime ({lifetime}) is not below the server's wait_timeout ({wait:g} s):"
            f" idle connections survive only through the pool's keep-alive pings (every {keepalive:g} s),"
            f" and a connection kept borrowed but unused for {wait:g} s is closed by the server;"
            f" use --lifetime below {wait:g}"
        )
    if wait and wait < _SHORT_WAIT_TIMEOUT:
        warnings.append(
            f"the server's wait_timeout is short ({wait:g} s): the pool pings idle connections every"
            f" {keepalive:g} s to keep them, but cannot keep a borrowed connection alive; code that holds"
            f" a connection idle for {wait:g} s gets 'MySQL server has gone away'"
        )
    others = max(facts.threads_connected - facts.pool_open, 0)
    free = facts.max_connections - others
    if pool.maxsize >= _SHARE_OF_FREE_SLOTS * free:
        warnings.append(
            f"maxsize ({pool.maxsize}) is at least {_SHARE_OF_FREE_SLOTS:.0%} of the server's free connection"
            f" slots (max_connections {facts.max_connections} - {others} other connections = {free}):"
            f" at full load this pool could exhaust the server (error 1040 'Too many connections')"
        )
    if facts.max_user_connections and pool.maxsize > facts.max_user_connections:
        warnings.append(
            f"maxsize ({pool.maxsize}) exceeds the server's max_user_connections"
            f" ({facts.max_user_connections}): borrows past that fail with error 1203"
        )
    return warnings


def _probe(conn: Any, samples: int, pool_open: int) -> Tuple[ServerFacts, List[float]]:
    cur = conn.cursor()
    try:
        cur.execute("SELECT VERSION(), @@SESSION.wait_timeout, @@GLOBAL.max_connections, @@GLOBAL.max_user_connections")
        version, wait, max_conn, max_user = cur.fetchone()
        cur.execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
        row = cur.fetchone()
        threads = int(row[1]) if row else 0
        timings: List[float] = []
        for _ in range(samples):
            started = time.perf_counter()
            cur.execute("SELECT 1")
            cur.fetchall()
            timings.append((time.perf_counter() - started) * 1000.0)
    finally:
        cur.close()
    facts = ServerFacts(
        version=str(version),
        wait_timeout=float(wait or 0),
        max_connections=int(max_conn or 0),
        max_user_connections=max(int(max_user or 0), 0),
        threads_connected=threads,
        pool_open=pool_open,
    )
    return facts, timings


def run(args: argparse.Namespace) -> int:
    if is_cluster_url(args.url):
        return cluster_check.run(args)
    settings = resolve(args, os.environ)
    pool_cfg = pool_settings(args)
    failure = _check(args, settings, pool_cfg)
    return 0 if failure is None else 1


def _fail(args: argparse.Namespace, settings: ConnectionSettings, message: str) -> str:
    print_error("check", message)
    if args.json:
        print(json.dumps({"ok": False, "error": message, "settings": settings.public_dict()}))
    return message


def _check(args: argparse.Namespace, settings: ConnectionSettings, pool_cfg: PoolSettings) -> Optional[str]:
    started = time.perf_counter()
    try:
        pool = ConnectionPool(name="pymysqlpool-check", **pool_cfg.pool_kwargs(), **settings.connect_kwargs())
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    except Exception as exc:  # pre_create dials in the constructor
        return _fail(args, settings, f"cannot connect to {settings.where}: {describe_error(exc, settings.password)}")
    try:
        try:
            conn = pool.connection()
        except Exception as exc:
            return _fail(
                args, settings, f"cannot connect to {settings.where}: {describe_error(exc, settings.password)}"
            )
        connect_ms = (time.perf_counter() - started) * 1000.0
        with conn:
            try:
                facts, timings = _probe(conn, args.samples, pool.total_num)
            except Exception as exc:
                reason = describe_error(exc, settings.password)
                return _fail(args, settings, f"query failed on {settings.where}: {reason}")
    finally:
        pool.close()
    warnings = assess(pool_cfg, facts)
    median = statistics.median(timings)
    if args.json:
        print(
            json.dumps(
                {
                    "ok": True,
                    "settings": settings.public_dict(),
                    "pool": asdict(pool_cfg),
                    "server": asdict(facts),
                    "connect_ms": round(connect_ms, 3),
                    "select1_ms": {
                        "median": round(median, 3),
                        "min": round(min(timings), 3),
                        "max": round(max(timings), 3),
                        "samples": len(timings),
                    },
                    "warnings": warnings,
                },
                indent=2,
            )
        )
        return None
    wait = facts.wait_timeout
    keepalive = min(_DEFAULT_KEEPALIVE, wait / 2.0) if wait else _DEFAULT_KEEPALIVE
    rows = [
        ("target", settings.describe()),
        ("server", facts.version),
        ("connect", f"{connect_ms:.1f} ms (pool set-up and first borrow, handshake included)"),
        (
            "SELECT 1",
            f"{median:.3f} ms median of {len(timings)} (min {min(timings):.3f}, max {max(timings):.3f})",
        ),
        ("wait_timeout", f"{wait:g} s (this session)"),
        (
            "max_connections",
            f"{facts.max_connections} (Threads_connected now: {facts.threads_connected},"
            f" {facts.pool_open} of them this check)",
        ),
        ("pool", pool_cfg.describe()),
        ("keep-alive", f"idle connections are pinged after {keepalive:g} s idle (60 s, at most wait_timeout/2)"),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label.ljust(width)}  {value}")
    for warning in warnings:
        print(f"WARN {warning}")
    count = len(warnings)
    print("OK" if not count else f"OK ({count} warning{'s' if count > 1 else ''})")
    return None
