"""Routing overhead of a ClusterPool borrow+return against a plain ConnectionPool.

Both pools point at the same server (a one-node "cluster": its primary takes
writes and, with no replica, reads too), so the difference is the cluster's
routing and return bookkeeping. Rounds are interleaved and the medians of the
per-cycle times reported, as the machine is noisy.

    python benchmarks/cluster_overhead.py [--host H --port P --user U --password PW --database DB]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any, Callable

from pymysqlpool import ClusterPool, ConnectionPool

CYCLES = 20_000
ROUNDS = 9


def _cycle_loop(borrow: Callable[[], Any], release: Callable[[Any], None], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        release(borrow())
    return (time.perf_counter() - started) / n * 1e6


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3306)
    parser.add_argument("--user", default="root")
    parser.add_argument("--password", default="")
    parser.add_argument("--database", default="test")
    parser.add_argument("--cycles", type=int, default=CYCLES)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args(argv)
    kwargs = {"user": args.user, "password": args.password, "database": args.database, "maxsize": 4}
    plain = ConnectionPool(host=args.host, port=args.port, **kwargs)
    cluster = ClusterPool(hosts=[(args.host, args.port)], **kwargs)
    try:
        if not cluster.wait_ready(10):
            print(f"the cluster found no writer: {cluster.get_stats()['problem']}", file=sys.stderr)
            return 1
        subjects: dict[str, tuple[Callable[[], Any], Callable[[Any], None]]] = {
            "ConnectionPool get_conn+release": (plain.get_conn, plain.release),
            "ClusterPool write borrow+release": (cluster.get_conn, cluster.release),
            "ClusterPool read borrow+release": (lambda: cluster.get_conn(read_only=True), cluster.release),
            "ClusterPool with-block (write)": (cluster.connection, lambda c: c.__exit__(None, None, None)),
        }
        for borrow, release in subjects.values():  # warm up: connections open, code paths hot
            _cycle_loop(borrow, release, 2000)
        times: dict[str, list[float]] = {name: [] for name in subjects}
        for _ in range(args.rounds):
            for name, (borrow, release) in subjects.items():
                times[name].append(_cycle_loop(borrow, release, args.cycles))
    finally:
        cluster.close()
        plain.close()
    base = statistics.median(times["ConnectionPool get_conn+release"])
    print(f"borrow+return, median of {args.rounds} interleaved rounds of {args.cycles} cycles (µs per cycle)")
    print(f"| {'subject':<34} | {'µs':>6} | {'vs plain':>8} |")
    print(f"|{'-' * 36}|{'-' * 8}|{'-' * 10}|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name:<34} | {median:6.2f} | {median - base:+8.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
