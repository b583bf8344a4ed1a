"""Hot paths counted in instructions (valgrind's callgrind), beside their floors and peers.

Wall-clock figures on a shared 2-core machine swing by 10-20 %; the number of
instructions a path executes does not. Each path is a small script that runs
its N cycles inside ``sys.call_tracing`` (the snippets' ``measured``), and
callgrind counts only what runs there (``--collect-atstart=no
--toggle-collect=sys_call_tracing``), on the main thread, with a fixed hash
seed. Counting whole programs, as this did before, took in the set-up's and
tear-down's waits (a cluster getting ready, a pool warming up), which grow
with wall time: runs of the same code differed by hundreds of instructions
per cycle, by ~2,000 on the cluster paths. The script runs twice, with N1
and N2 cycles, and the difference divided by N2 - N1 is one cycle's cost
(the first cycles' specialization cancels out). During the count no pool
runs maintenance and no cluster probes: that work runs on the clock, not per
borrow.

    python benchmarks/instructions.py [--path NAME ...] [--n1 N --n2 N] [--host H --port P ...]

``./dev bench`` runs it as the ``instructions`` scenario. A commit that changes
a hot path gives these numbers before and after in its message.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks.common import Check, Table

# Each snippet reads N (cycles) and KW (server keyword arguments) and runs
# N cycles of one path inside measured(): callgrind counts only what runs
# there (--toggle-collect=sys_call_tracing), so neither the set-up's waits (a
# cluster getting ready, a pool warming up: they grow with wall time) nor the
# tear-down come into the count, and the same code gives the same count.
_PRELUDE = """
import gc, json, os, sys
N = int(sys.argv[1])
KW = json.loads(os.environ["PYMYSQLPOOL_CG_KW"])

def measured(fn, *args):
    gc.collect()
    return sys.call_tracing(fn, args)

def cycles_here(source):
    # The N cycles as module-level code, as the floor and the rows measured before
    # the count was toggled were: names read from the module's dict, like a pool's attributes.
    measured(exec, compile(source, "<cycles>", "exec"), globals())

def still(pool):
    # No maintenance round during the count: its work runs on the clock, not per borrow.
    if pool._maintenance is not None:
        return pool._maintenance.stop()

def quiet(cluster):
    # No probe during the count either (set twice: a probe in flight sets its node's again).
    for node in cluster._steering.nodes:
        node.next_probe = 1e9
"""

_FAKE_POOL = """
sys.path.insert(0, os.environ["PYMYSQLPOOL_CG_ROOT"])
from benchmarks.fake import fake_connect
from pymysqlpool import ConnectionPool
pool = ConnectionPool(maxsize=4, pre_create_num=1, connection_factory=fake_connect,
                      validation_interval=1e9, keepalive_interval=0)
still(pool)
"""

_SERVER_POOL = """
from pymysqlpool import ConnectionPool
pool = ConnectionPool(maxsize=1, pre_create_num=1, validation_interval=1e9, keepalive_interval=0, **KW)
still(pool)
"""

# An asyncio pool on a loop of the snippet's own, opened and stilled before the count.
_ASYNC_POOL = """
import asyncio
from pymysqlpool import AsyncConnectionPool
loop = asyncio.new_event_loop()
pool = AsyncConnectionPool(maxsize=1, pre_create_num=1, validation_interval=1e9, keepalive_interval=0, **KW)
async def set_up():
    await pool.open(wait=True)
    await still(pool)
loop.run_until_complete(set_up())
"""

_ASYNC_END = """
loop.run_until_complete(pool.close())
loop.close()
"""

# A one-node ClusterPool's borrow + return, beside the plain pool on the same
# server; once ready, no probe is due and no node pool runs maintenance.
_CLUSTER = """
import time
from pymysqlpool import ClusterPool
cluster = ClusterPool(hosts=[(KW.pop("host"), KW.pop("port"))], maxsize=1, pre_create_num=1,
                      validation_interval=1e9, keepalive_interval=0, **KW)
cluster.wait_ready(10)
quiet(cluster); time.sleep(1.1); quiet(cluster)
for node in cluster._steering.nodes:
    still(node.pool)
get, release = cluster.get_conn, cluster.release
cycles_here('''
for _ in range(N):
    release({borrow})
''')
cluster.close()
"""

# The same for AsyncClusterPool, beside the plain asyncio pool.
_ACLUSTER = """
import asyncio
from pymysqlpool import AsyncClusterPool
loop = asyncio.new_event_loop()
cluster = AsyncClusterPool(hosts=[(KW.pop("host"), KW.pop("port"))], maxsize=1, pre_create_num=1,
                           validation_interval=1e9, keepalive_interval=0, **KW)
async def set_up():
    await cluster.open()
    await cluster.wait_ready(10)
    quiet(cluster); await asyncio.sleep(1.1); quiet(cluster)
    for node in cluster._steering.nodes:
        await still(node.pool)
loop.run_until_complete(set_up())
get, release = cluster.get_conn, cluster.release
async def cycles():
    for _ in range(N):
        await release(await {borrow})
measured(loop.run_until_complete, cycles())
loop.run_until_complete(cluster.close())
loop.close()
"""


@dataclass(frozen=True)
class Path_:
    name: str
    label: str
    code: str
    needs: str = ""  # a module the path imports; missing: n/a


PATHS = [
    Path_(
        "floor",
        "floor: lock + pop + slotted proxy + lock + append",
        """
import threading
from collections import deque
class Proxy:
    __slots__ = ("pool", "raw")
    def __init__(self, pool, raw):
        self.pool = pool; self.raw = raw
lock = threading.Lock(); idle = deque([object()])
cycles_here('''
for _ in range(N):
    with lock:
        raw = idle.pop()
    p = Proxy(idle, raw)
    with lock:
        idle.append(p.raw)
''')
""",
    ),
    Path_(
        "thread",
        "ConnectionPool get_conn + release (no server)",
        _FAKE_POOL
        + """
get, release = pool.get_conn, pool.release
cycles_here('''
for _ in range(N):
    release(get())
''')
pool.close()
""",
    ),
    Path_(
        "raw_query",
        "raw PyMySQL: cursor, SELECT 1, fetchall, close",
        """
import pymysql
conn = pymysql.connect(**KW)
cycles_here('''
for _ in range(N):
    cur = conn.cursor(); cur.execute("SELECT 1"); cur.fetchall(); cur.close()
''')
conn.close()
""",
    ),
    Path_(
        "query",
        "ConnectionPool: borrow, cursor, SELECT 1, fetchall, close, return",
        _SERVER_POOL
        + """
cycles_here('''
for _ in range(N):
    c = pool.get_conn()
    cur = c.cursor(); cur.execute("SELECT 1"); cur.fetchall(); cur.close()
    pool.release(c)
''')
pool.close()
""",
    ),
    Path_(
        "async",
        "AsyncConnectionPool get_conn + release",
        _ASYNC_POOL
        + """
get, release = pool.get_conn, pool.release
async def cycles():
    for _ in range(N):
        await release(await get())
measured(loop.run_until_complete, cycles())
"""
        + _ASYNC_END,
        needs="aiomysql",
    ),
    Path_(
        "aiomysql_pool",
        "aiomysql's pool acquire + release",
        """
import asyncio, aiomysql
KW["db"] = KW.pop("database")
loop = asyncio.new_event_loop()
async def set_up():
    return await aiomysql.create_pool(minsize=1, maxsize=1, **KW)
pool = loop.run_until_complete(set_up())
async def cycles():
    for _ in range(N):
        conn = await pool.acquire(); pool.release(conn)
measured(loop.run_until_complete, cycles())
pool.close(); loop.run_until_complete(pool.wait_closed()); loop.close()
""",
        needs="aiomysql",
    ),
    Path_(
        "asyncmy_pool",
        "asyncmy's pool acquire + release",
        """
import asyncio, asyncmy
loop = asyncio.new_event_loop()
async def set_up():
    return await asyncmy.create_pool(minsize=1, maxsize=1, **KW)
pool = loop.run_until_complete(set_up())
async def cycles():
    for _ in range(N):
        conn = await pool.acquire(); pool.release(conn)
measured(loop.run_until_complete, cycles())
pool.close(); loop.run_until_complete(pool.wait_closed()); loop.close()
""",
        needs="asyncmy",
    ),
    Path_(
        "raw_aquery",
        "raw aiomysql: cursor, SELECT 1, fetchall, close",
        """
import asyncio, aiomysql
KW["db"] = KW.pop("database")
loop = asyncio.new_event_loop()
async def set_up():
    return await aiomysql.connect(**KW)
conn = loop.run_until_complete(set_up())
async def cycles():
    for _ in range(N):
        cur = await conn.cursor(); await cur.execute("SELECT 1"); await cur.fetchall(); await cur.close()
measured(loop.run_until_complete, cycles())
conn.close(); loop.close()
""",
        needs="aiomysql",
    ),
    Path_(
        "aquery",
        "AsyncConnectionPool: borrow, cursor, SELECT 1, fetchall, close, return",
        _ASYNC_POOL
        + """
async def cycles():
    for _ in range(N):
        c = await pool.get_conn()
        cur = await c.cursor(); await cur.execute("SELECT 1"); await cur.fetchall(); await cur.close()
        await pool.release(c)
measured(loop.run_until_complete, cycles())
"""
        + _ASYNC_END,
        needs="aiomysql",
    ),
    Path_(
        "plain_server",
        "ConnectionPool get_conn + release (server connection)",
        _SERVER_POOL
        + """
get, release = pool.get_conn, pool.release  # as the cluster rows do: the same loop around both
cycles_here('''
for _ in range(N):
    release(get())
''')
pool.close()
""",
    ),
    Path_(
        "cluster_write",
        "ClusterPool (one node) get_conn + release, write",
        _CLUSTER.format(borrow="get()"),
    ),
    Path_(
        "cluster_read",
        "ClusterPool (one node) get_conn(read_only=True) + release",
        _CLUSTER.format(borrow="get(read_only=True)"),
    ),
    Path_(
        "acluster_write",
        "AsyncClusterPool (one node) get_conn + release, write",
        _ACLUSTER.format(borrow="get()"),
        needs="aiomysql",
    ),
    Path_(
        "acluster_read",
        "AsyncClusterPool (one node) get_conn(read_only=True) + release",
        _ACLUSTER.format(borrow="get(read_only=True)"),
        needs="aiomysql",
    ),
]
BY_NAME = {p.name: p for p in PATHS}

# Issue 21's targets, each a ratio or a difference between two measured rows.
THREAD_MAX_FLOOR_RATIO = 2.0
QUERY_MAX_RAW_RATIO = 1.10
ASYNC_MAX_INSTRUCTIONS = 18_000
AQUERY_MAX_RAW_RATIO = 1.05
CLUSTER_WRITE_MAX_EXTRA = 3_000
CLUSTER_READ_MAX_EXTRA = 5_000


def _total(out: str) -> int:
    with open(out, encoding="utf-8") as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


def script(path: Path_) -> str:
    """The program that runs ``path``: argv[1] cycles, set-up and tear-down outside the count."""
    return _PRELUDE + textwrap.dedent(path.code)


def environment(kwargs: dict[str, Any]) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONHASHSEED": "0",  # set and dict layouts, and so their costs, the same in every run
        "PYMYSQLPOOL_CG_KW": json.dumps(kwargs),
        "PYMYSQLPOOL_CG_ROOT": str(Path(__file__).resolve().parent.parent),
    }


def count(path: Path_, kwargs: dict[str, Any], n1: int, n2: int, python: str = sys.executable) -> int | None:
    """Instructions per cycle of ``path``; None if a module it needs is missing."""
    if path.needs:
        try:
            __import__(path.needs)
        except ImportError:
            return None
    code, env = script(path), environment(kwargs)
    totals = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (n1, n2):
            out = os.path.join(tmp, f"cg.{n}")
            subprocess.run(
                ["valgrind", "--tool=callgrind", "--separate-threads=yes", "--collect-atstart=no",
                 "--toggle-collect=sys_call_tracing", f"--callgrind-out-file={out}",
                 python, "-c", code, str(n)],
                env=env, check=True, capture_output=True, timeout=900,
            )  # fmt: skip
            totals.append(_total(out + "-01"))  # valgrind's thread 1: the main thread
    return round((totals[1] - totals[0]) / (n2 - n1))


def measure(kwargs: dict[str, Any], names: list[str], n1: int, n2: int, say: Any = None) -> dict[str, int | None]:
    results: dict[str, int | None] = {}
    for name in names:
        if say:
            say(f"callgrind: {name}")
        results[name] = count(BY_NAME[name], kwargs, n1, n2)
    return results


def _ratio_check(r: dict[str, int | None], ours: str, base: str, limit: float, what: str) -> Check:
    a, b = r.get(ours), r.get(base)
    if a is None or b is None:
        return Check("instructions", BY_NAME[ours].label, f"≤ {limit:.2f}x {what}", None, "n/a")
    return Check("instructions", BY_NAME[ours].label, f"≤ {limit:.2f}x {what}", a <= limit * b, f"{a / b:.2f}x")


def _extra_check(r: dict[str, int | None], ours: str, base: str, limit: int) -> Check:
    a, b = r.get(ours), r.get(base)
    target = f"≤ +{limit:,} over the plain pool"
    if a is None or b is None:
        return Check("instructions", BY_NAME[ours].label, target, None, "n/a")
    return Check("instructions", BY_NAME[ours].label, target, a - b <= limit, f"{a - b:+,}")


def checks(r: dict[str, int | None]) -> list[Check]:
    result = [
        _ratio_check(r, "thread", "floor", THREAD_MAX_FLOOR_RATIO, "the floor"),
        _ratio_check(r, "query", "raw_query", QUERY_MAX_RAW_RATIO, "raw PyMySQL"),
        _ratio_check(r, "aquery", "raw_aquery", AQUERY_MAX_RAW_RATIO, "raw aiomysql"),
        _extra_check(r, "cluster_write", "plain_server", CLUSTER_WRITE_MAX_EXTRA),
        _extra_check(r, "cluster_read", "plain_server", CLUSTER_READ_MAX_EXTRA),
        _extra_check(r, "acluster_write", "async", CLUSTER_WRITE_MAX_EXTRA),
        _extra_check(r, "acluster_read", "async", CLUSTER_READ_MAX_EXTRA),
    ]
    a = r.get("async")
    target = f"≤ {ASYNC_MAX_INSTRUCTIONS:,}"
    result.append(
        Check("instructions", BY_NAME["async"].label, target, None if a is None else a <= ASYNC_MAX_INSTRUCTIONS,
              "n/a" if a is None else f"{a:,}")
    )  # fmt: skip
    return result


def table(r: dict[str, int | None], n1: int, n2: int, targets: list[Check] | None = None) -> Table:
    """One row per path; a path with a target shows it, what was measured
    against it and PASS/MISS (computed by ``checks``), the floors and peers
    the targets compare with stand beside them."""
    by_subject = {c.subject: c for c in targets or []}
    rows = []
    for name, v in r.items():
        label = BY_NAME[name].label
        c = by_subject.get(label)
        target = [c.target, c.measured, c.verdict] if c else ["", "", ""]
        rows.append([label, "n/a" if v is None else f"{v:,}", *target])
    return Table(
        "Hot paths in instructions (callgrind; lower is better)",
        ["path", "instructions per cycle", "target", "measured", "result"],
        rows,
        [f"(count of {n2} cycles - count of {n1}) / {n2 - n1}: only the cycles are counted (not set-up"
         " and tear-down), on the main thread, with no maintenance round or probe meanwhile."],
    )  # fmt: skip


def available() -> bool:
    return shutil.which("valgrind") is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", action="extend", nargs="+", choices=list(BY_NAME), metavar="NAME")
    parser.add_argument("--n1", type=int, default=1000)
    parser.add_argument("--n2", type=int, default=5000)
    parser.add_argument("--host", default=os.environ.get("MYSQL_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("MYSQL_PORT", "3306")))
    parser.add_argument("--user", default=os.environ.get("MYSQL_USER", "root"))
    parser.add_argument("--password", default=os.environ.get("MYSQL_PWD", ""))
    parser.add_argument("--database", default=os.environ.get("MYSQL_DATABASE", "test"))
    args = parser.parse_args(argv)
    if not available():
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    kwargs = {"host": args.host, "port": args.port, "user": args.user, "password": args.password,
              "database": args.database}  # fmt: skip
    names = args.path or list(BY_NAME)
    r = measure(kwargs, names, args.n1, args.n2, say=lambda m: print(m, file=sys.stderr, flush=True))
    t = table(r, args.n1, args.n2, checks(r))
    print(f"| {' | '.join(t.headers)} |")
    for row in t.rows:
        print(f"| {' | '.join(row)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
