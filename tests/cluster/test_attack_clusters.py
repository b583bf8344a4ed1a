"""An independent tester's attack on ClusterPool and AsyncClusterPool, written
from docs/cluster.md, docs/asyncio.md and docs/stats.md alone (not the source).

Each test checks one promise of those pages against real throwaway topologies
(tests/support/mariadb_cluster.py): cancel storms of long statements, causal
reads and writes; nodes frozen (SIGSTOP) and flapping while borrows are in
flight; an event loop ended under the cluster; open() cancelled at any point.
Books are read through the public API (get_stats(), node_pools()) and the
servers' process lists. A test that shows a defect is
``xfail(strict=True)`` with the defect in its reason: it fails once fixed.

Every loop is bounded in count and in time; every bound asserted is a
documented contract plus SLACK for a loaded machine, never a speed.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

import pymysql
import pytest

from pymysqlpool import AsyncClusterPool, ClusterPool, PoolError, PoolTimeout, SplitBrainError, WrongEventLoop
from support.mariadb_cluster import APP_USER, GaleraCluster, ReplicationCluster
from support.throwaway_mariadb import ThrowawayMariaDB

pytestmark = pytest.mark.cluster

SLACK = 1.5  # seconds a loaded 2-core machine may add to a contract bound
MAXSIZE = 4
KW: dict[str, Any] = {
    "maxsize": MAXSIZE,
    "probe_interval": 0.2,
    "probe_timeout": 1,
    "connect_timeout": 2,
    "timeout": 3,
    "read_timeout": 5,  # a statement sent to a frozen node ends; the borrow bound is what is checked
}
# A borrow ends within timeout + connect_timeout (+ 0.25 s for a causal wait): docs/cluster.md.
BORROW_BOUND = KW["timeout"] + KW["connect_timeout"] + 0.25 + SLACK
GAUGES_ZERO = ("borrowed", "connecting", "waiting", "killing")


# -- what the servers hold -----------------------------------------------------------


def app_sessions(server: ThrowawayMariaDB) -> list[tuple[Any, ...]]:
    """The pool account's sessions in `test`: the node pool's slots and its probe
    (a KILL side connection selects no database)."""
    return list(
        server.admin_query(
            "SELECT ID, COMMAND, LEFT(INFO, 40) FROM information_schema.PROCESSLIST WHERE USER = %s AND DB = 'test'",
            (APP_USER,),
        )
    )


def sessions_left(servers: list[ThrowawayMariaDB], within: float = 3.0) -> dict[int, list[tuple[Any, ...]]]:
    """The pool's sessions still on each server once they had ``within`` seconds
    to end (a closed socket is noticed at once; a statement whose KILL could not
    reach a frozen node runs to its end, at most 2 s here)."""
    deadline = time.monotonic() + within
    for _ in range(int(within / 0.05) + 1):
        left = {s.port: app_sessions(s) for s in servers}
        if not any(left.values()) or time.monotonic() > deadline:
            return left
        time.sleep(0.05)
    return {s.port: app_sessions(s) for s in servers}


class SessionPeaks:
    """Samples every server's process list in a thread of its own (bounded in
    count and time) and keeps the most slot sessions seen at once per server."""

    def __init__(self, servers: list[ThrowawayMariaDB], seconds: float) -> None:
        self.servers = servers
        self.seconds = seconds
        self.peak: dict[int, int] = {}
        self.at_peak: dict[int, list[tuple[Any, ...]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="attack-session-sampler", daemon=True)

    def _run(self) -> None:
        conns = {
            s.port: pymysql.connect(**{**s.connect_kwargs(), "autocommit": True, "read_timeout": 5})
            for s in self.servers
        }
        deadline = time.monotonic() + self.seconds
        try:
            for _ in range(int(self.seconds / 0.005) + 1):
                if self._stop.is_set() or time.monotonic() > deadline:
                    break
                for port, conn in conns.items():
                    with conn.cursor() as cur:
                        cur.execute(
                            "SELECT ID, COMMAND, LEFT(INFO, 40) FROM information_schema.PROCESSLIST"
                            " WHERE USER = %s AND DB = 'test'",
                            (APP_USER,),
                        )
                        rows = list(cur.fetchall())
                    if len(rows) > self.peak.get(port, 0):
                        self.peak[port], self.at_peak[port] = len(rows), rows
                self._stop.wait(0.005)
        finally:
            for conn in conns.values():
                conn.close()

    def __enter__(self) -> SessionPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


# -- books ---------------------------------------------------------------------------


def pool_threads_ended(within: float = 5.0) -> None:
    """Wait (bounded) until no thread of a closed ClusterPool runs: a probe
    worker outlives close() by up to a connect and may log a traceback. Python
    3.11's ast.parse, called for pytest's report of a failure, can then raise
    SystemError ('AST constructor recursion depth mismatch') and end the whole run."""
    deadline = time.monotonic() + within
    for _ in range(int(within / 0.05) + 1):
        if not any(t.name.startswith("pymysqlpool") for t in threading.enumerate()) or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def closes(stats: dict[str, Any]) -> int:
    return sum(int(v) for k, v in stats.items() if k.startswith("closed_") or k == "leaks_reclaimed")


def book_errors(stats: dict[str, Any]) -> list[str]:
    """What docs/stats.md promises of a quiet pool, for the cluster and each node."""
    errors = []
    for name, books in [("cluster", stats), *stats["nodes"].items()]:
        for gauge in GAUGES_ZERO:
            if books[gauge]:
                errors.append(f"{name}: {gauge}={books[gauge]}")
        if books["open"] != books["idle"]:
            errors.append(f"{name}: open={books['open']} idle={books['idle']}")
        if books["borrows"] != books["returns"]:
            errors.append(f"{name}: borrows={books['borrows']} returns={books['returns']}")
        if books["connections_made"] != closes(books) + books["open"] - books["killing"]:
            errors.append(f"{name}: made={books['connections_made']} closes={closes(books)} open={books['open']}")
    # get_stats() sums every node's counters (docs/cluster.md, Stats).
    for key in ("borrows", "returns", "connections_made", "kills", "kill_failures", "open", "idle"):
        total = sum(int(node[key]) for node in stats["nodes"].values())
        if stats[key] != total:
            errors.append(f"cluster {key}={stats[key]} but the nodes sum to {total}")
    return errors


async def quiet(cluster: AsyncClusterPool, seconds: float) -> dict[str, Any]:
    """The stats once no borrow, dial or kill is in flight (bounded wait)."""
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / 0.05) + 1):
        stats = cluster.get_stats()
        if not any(stats[g] for g in GAUGES_ZERO) or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.05)
    return cluster.get_stats()


def others(task: Optional[asyncio.Task[Any]]) -> list[str]:
    return sorted(t.get_name() for t in asyncio.all_tasks() if t is not task)


# -- the storm -------------------------------------------------------------------------


@dataclass
class Storm:
    """What one storm of borrowers saw and left behind."""

    outcomes: dict[str, int] = field(default_factory=dict)
    borrow_times: list[float] = field(default_factory=list)
    foreign_rows: list[Any] = field(default_factory=list)
    started: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    peaks: dict[int, int] = field(default_factory=dict)
    at_peak: dict[int, list[Any]] = field(default_factory=dict)
    close_seconds: float = 0.0
    left_tasks: list[str] = field(default_factory=list)
    left_sessions: dict[int, list[Any]] = field(default_factory=dict)
    gauge_errors: list[str] = field(default_factory=list)

    def count(self, what: str) -> None:
        self.outcomes[what] = self.outcomes.get(what, 0) + 1


async def storm(
    replication: ReplicationCluster,
    seconds: float,
    freezer: Optional[threading.Thread] = None,
    set_up: Optional[str] = None,
) -> Storm:
    """24 tasks borrow at once (writes, transactions, plain and causal reads,
    statements of up to 2 s) while a canceller cancels about one in seven of
    them at every step, at random points: in the routing, the causal wait,
    the dial, the statement, the return. Optionally ``freezer`` SIGSTOPs nodes
    meanwhile; ``set_up``: every new connection runs it first (init_command)."""
    seen = Storm()
    cluster = AsyncClusterPool(replication.url(), **KW, **({"init_command": set_up} if set_up else {}))
    await cluster.open()
    assert await cluster.wait_ready(20, read_only=True), cluster.get_stats()["problem"]
    table = f"atk_{uuid.uuid4().hex[:8]}"
    async with cluster.connection() as conn, conn.cursor() as cur:
        await cur.execute(f"CREATE TABLE {table} (id INT AUTO_INCREMENT PRIMARY KEY, v BIGINT)")
    await asyncio.to_thread(replication.wait_caught_up)

    async def borrower() -> None:
        kind = random.choice(["write", "txn", "read", "causal"])
        token = random.randrange(1 << 40)
        started = time.monotonic()
        entered = False
        try:
            async with cluster.connection(read_only=kind in ("read", "causal"), causal=kind == "causal") as conn:
                entered = True
                seen.borrow_times.append(time.monotonic() - started)
                async with conn.cursor() as cur:
                    if kind == "txn":
                        await conn.begin()
                    if kind in ("write", "txn"):
                        await cur.execute(f"INSERT INTO {table} (v) VALUES (%s)", (token,))
                    await cur.execute("SELECT %s, SLEEP(%s)", (token, random.choice([0, 0, 0.05, 0.3, 2])))
                    row = await cur.fetchone()
                    if row[0] != token:
                        seen.foreign_rows.append((row, token))
                    if kind == "txn":
                        await conn.commit()
            seen.count("ok")
        except asyncio.CancelledError:
            seen.count("cancelled")
            raise
        except (pymysql.err.MySQLError, PoolTimeout) as exc:
            if not entered:
                seen.borrow_times.append(time.monotonic() - started)
            seen.count(type(exc).__name__)

    if freezer is not None:
        freezer.start()
    tasks: set[asyncio.Task[None]] = set()
    deadline = time.monotonic() + seconds
    try:
        with SessionPeaks(replication.servers, seconds + 5) as sampler:
            for _ in range(int(seconds / 0.005)):
                if time.monotonic() > deadline:
                    break
                while len(tasks) < 24:
                    tasks.add(asyncio.ensure_future(borrower()))
                    seen.started += 1
                await asyncio.sleep(random.random() * 0.02)
                # docs/stats.md: open + connecting <= pool_max always, per node pool.
                for name, node in cluster.get_stats()["nodes"].items():
                    if node["open"] + node["connecting"] > node["pool_max"]:
                        seen.gauge_errors.append(f"{name}: open={node['open']} connecting={node['connecting']}")
                for task in tasks:
                    if random.random() < 0.15:
                        task.cancel()
                tasks = {t for t in tasks if not t.done()}
            for task in tasks:
                task.cancel()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), BORROW_BOUND + 5)
    finally:
        if freezer is not None:
            await asyncio.to_thread(freezer.join, 30)
    seen.peaks, seen.at_peak = sampler.peak, sampler.at_peak
    seen.stats = await quiet(cluster, 2 * KW["connect_timeout"] + 1 + SLACK)
    started = time.monotonic()
    await asyncio.wait_for(cluster.close(), 30)
    seen.close_seconds = time.monotonic() - started
    seen.left_tasks = others(asyncio.current_task())
    seen.left_sessions = await asyncio.to_thread(sessions_left, replication.servers)
    return seen


@pytest.fixture(scope="module")
def cancel_storm(replication: ReplicationCluster) -> Storm:
    """One 8 s cancel storm on the shared healthy topology, read by two tests."""
    return asyncio.run(storm(replication, 8.0))


def test_cancel_storm_leaves_exact_books_and_no_session(cancel_storm: Storm) -> None:
    """docs/asyncio.md and cluster.md: cancellation at any await leaves exact
    books, no borrower sees another's rows, close() leaves no session and no task."""
    seen = cancel_storm
    assert seen.outcomes.get("cancelled", 0) > 100, seen.outcomes  # the storm did cancel
    assert seen.outcomes.get("ok", 0) > 20, seen.outcomes
    assert seen.stats["causal_waits"] > 0, seen.stats  # cancels could land in a causal wait
    assert seen.foreign_rows == []
    assert seen.gauge_errors == []
    assert book_errors(seen.stats) == []
    assert seen.close_seconds < KW["connect_timeout"] + SLACK
    assert seen.left_tasks == []
    assert seen.left_sessions == {s: [] for s in seen.left_sessions}


def test_cancel_storm_on_a_healthy_cluster_kills_every_abandoned_statement(
    cancel_storm: Storm, replication: ReplicationCluster
) -> None:
    """docs/asyncio.md: the pool kills an abandoned statement's session and
    counts the slot until the server let it go, so the server never holds more
    than maxsize of a pool's sessions; kill_failures are kills refused or
    unreachable (docs/stats.md). Every node here answers within milliseconds.
    A second storm gives every new connection a set-up statement (init_command),
    so that cancels land in connects whose session the server had made too:
    the server ran that statement on after the socket closed while the pool
    dialed beside it (before the fix: nodes held 14, 42 and 8 sessions of a
    pool of 4; the plain storm showed a 6th about one run in two)."""
    storms = [cancel_storm, asyncio.run(storm(replication, 8.0, set_up="DO SLEEP(0.05)"))]
    assert all(seen.stats["kills"] > 50 for seen in storms)  # abandoned statements were killed
    # A node pool's slots plus its probe connection, and no kill failing.
    shown = [
        (seen.stats["kill_failures"], seen.stats["kills"], seen.peaks, seen.at_peak)
        for seen in storms
        if seen.stats["kill_failures"] > 0 or any(peak > MAXSIZE + 1 for peak in seen.peaks.values())
    ]
    assert shown == []
    assert book_errors(storms[1].stats) == [] and storms[1].left_sessions == {s: [] for s in storms[1].left_sessions}


# -- frozen and flapping nodes ------------------------------------------------------------


def flapping(servers: list[ThrowawayMariaDB], seconds: float) -> threading.Thread:
    """SIGSTOP / SIGCONT each of ``servers`` in turn for ``seconds`` (bounded count)."""

    def run() -> None:
        deadline = time.monotonic() + seconds
        for i in range(200):
            if time.monotonic() > deadline:
                break
            server = servers[i % len(servers)]
            server.pause()
            try:
                time.sleep(random.uniform(0.2, 1.2))
            finally:
                server.resume()
            time.sleep(random.uniform(0.1, 0.5))

    return threading.Thread(target=run, name="attack-flapper", daemon=True)


def test_flapping_nodes_every_borrow_ends_within_its_bound(restore: ReplicationCluster) -> None:
    """A replica and the primary frozen and thawed in turn under the storm: every
    borrow ends within timeout + connect_timeout (+ 0.25 s causal), the books
    are exact afterwards and close() leaves nothing (docs/cluster.md, "Every wait is bounded")."""
    replication = restore
    frozen = [replication.replicas[0], replication.primary]
    seen = asyncio.run(storm(replication, 8.0, flapping(frozen, 8.0)))
    assert max(seen.borrow_times) <= BORROW_BOUND, sorted(seen.borrow_times)[-5:]
    assert seen.foreign_rows == []
    assert seen.gauge_errors == []
    assert book_errors(seen.stats) == []
    assert seen.close_seconds < KW["connect_timeout"] + SLACK
    assert seen.left_tasks == []
    assert seen.left_sessions == {s: [] for s in seen.left_sessions}


def test_thread_writers_with_the_primary_frozen_end_within_their_bound(restore: ReplicationCluster) -> None:
    """ClusterPool: eight threads borrow writes while the primary is frozen;
    each borrow ends (a connection or PoolTimeout) within timeout + connect_timeout,
    writes flow again once it thaws, and the books are exact."""
    replication = restore
    cluster = ClusterPool(replication.url(), **KW)
    try:
        assert cluster.wait_ready(20)
        times: list[float] = []
        errors: list[str] = []

        def writer() -> None:
            for _ in range(3):
                started = time.monotonic()
                try:
                    conn = cluster.get_conn()
                except PoolTimeout:
                    times.append(time.monotonic() - started)
                    continue
                times.append(time.monotonic() - started)
                try:
                    with conn.cursor() as cur:
                        cur.execute("SELECT 1")
                except pymysql.err.MySQLError as exc:
                    errors.append(type(exc).__name__)
                finally:
                    cluster.release(conn)

        replication.primary.pause()
        try:
            threads = [threading.Thread(target=writer, name=f"attack-writer-{i}") for i in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(3 * (BORROW_BOUND + KW["read_timeout"]) + 5)
            assert not any(t.is_alive() for t in threads)
        finally:
            replication.primary.resume()
        assert len(times) == 24 and max(times) <= BORROW_BOUND, sorted(times)[-5:]
        assert cluster.wait_ready(10)
        with cluster.connection(timeout=10) as conn, conn.cursor() as cur:
            cur.execute("SELECT @@port")
            assert cur.fetchone()[0] == replication.primary.port
        stats = cluster.get_stats()
        deadline = time.monotonic() + 2 * KW["connect_timeout"] + 1 + SLACK
        while any(stats[g] for g in GAUGES_ZERO) and time.monotonic() < deadline:
            time.sleep(0.05)
            stats = cluster.get_stats()
        assert book_errors(stats) == []
    finally:
        cluster.close()
        pool_threads_ended()
    assert sessions_left(replication.servers) == {s.port: [] for s in replication.servers}


# -- event loops ------------------------------------------------------------------------------


def test_used_by_one_asyncio_run_closed_by_the_next(replication: ReplicationCluster) -> None:
    """docs/asyncio.md, "One event loop": a second loop gets WrongEventLoop at
    once; once the first loop ended, close() on another loop ends every session
    on every node, idle and still-borrowed alike, and leaves no task."""
    cluster = AsyncClusterPool(replication.url(), **KW)
    held: list[Any] = []

    async def first() -> None:
        await cluster.open()
        assert await cluster.wait_ready(20, read_only=True)
        held.append(await cluster.get_conn())  # still borrowed when the loop ends
        held.append(await cluster.get_conn(read_only=True, causal=True))
        conn = await cluster.get_conn(read_only=True)
        await cluster.release(conn)

    async def second() -> float:
        for call in (
            cluster.get_conn(),
            cluster.get_conn(read_only=True),
            cluster.wait_ready(1),
            cluster.wait_probed(1),
        ):
            started = time.monotonic()
            with pytest.raises(WrongEventLoop):
                await asyncio.wait_for(call, 5)
            assert time.monotonic() - started < 1
        started = time.monotonic()
        await asyncio.wait_for(cluster.close(), 10 + KW["connect_timeout"])
        elapsed = time.monotonic() - started
        assert others(asyncio.current_task()) == []
        return elapsed

    asyncio.run(first())
    assert any(app_sessions(s) for s in replication.servers)
    elapsed = asyncio.run(second())
    assert elapsed < KW["connect_timeout"] + SLACK
    assert cluster.closed
    assert sessions_left(replication.servers) == {s.port: [] for s in replication.servers}


def test_a_release_from_another_loop_is_refused_and_loses_no_slot(replication: ReplicationCluster) -> None:
    """A write and a causal read borrowed on loop A, given back on loop B:
    WrongEventLoop at once, the slots stay lent (not half-returned), and the
    release on loop A returns both (docs/asyncio.md, "One event loop")."""
    cluster = AsyncClusterPool(replication.url(), **KW)
    loop = asyncio.new_event_loop()

    async def borrow() -> list[Any]:
        await cluster.open()
        assert await cluster.wait_ready(20, read_only=True)
        return [await cluster.get_conn(), await cluster.get_conn(read_only=True, causal=True)]

    try:
        conns = loop.run_until_complete(borrow())
        for conn in conns:
            with pytest.raises(WrongEventLoop):
                asyncio.run(cluster.release(conn))
        assert (cluster.get_stats()["borrowed"], cluster.get_stats()["returns"]) == (2, 0)
        for conn in conns:
            loop.run_until_complete(cluster.release(conn))
        assert book_errors(cluster.get_stats()) == []
    finally:
        loop.run_until_complete(cluster.close())
        assert asyncio.all_tasks(loop) == set()
        loop.close()


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.3, 1.0])
def test_open_cancelled_at_any_point_with_a_frozen_replica_leaves_nothing(
    restore: ReplicationCluster, delay: float
) -> None:
    """`await cluster.open()` (pre_create_num connections per node; a frozen
    replica makes it wait for connect_timeout) cancelled at ``delay``: the
    cancellation stays one, close() is prompt, no task and no session is left."""
    replication = restore
    frozen = replication.replicas[0]
    alive = [s for s in replication.servers if s is not frozen]

    async def scenario() -> tuple[str, float, list[str]]:
        cluster = AsyncClusterPool(replication.url(), **{**KW, "pre_create_num": 2})
        task = asyncio.ensure_future(cluster.open())
        await asyncio.sleep(delay)
        task.cancel()
        try:
            await task
            ended = "completed"
        except asyncio.CancelledError:
            ended = "cancelled"
        started = time.monotonic()
        await asyncio.wait_for(cluster.close(), 10 + KW["connect_timeout"])
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.1)
        return ended, elapsed, others(asyncio.current_task())

    frozen.pause()
    try:
        ended, elapsed, left = asyncio.run(scenario())
        sessions = sessions_left(alive)
    finally:
        frozen.resume()
    assert ended == "cancelled"  # open() waits for the frozen replica up to connect_timeout
    assert elapsed < KW["connect_timeout"] + SLACK
    assert left == []
    assert sessions == {s.port: [] for s in alive}


def write_behind_stopped_replicas(cluster: Any, replication: ReplicationCluster, stop: str, value: int) -> str:
    """A new table, replicated everywhere; then every replica stopped with
    ``stop`` and one row (``value``) written through the cluster, which only
    the primary holds. Returns the table's name."""
    table = f"atk_{uuid.uuid4().hex[:8]}"
    with cluster.connection() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (v INT)")
    replication.wait_caught_up()
    for replica in replication.replicas:
        replica.admin_query(stop)
    with cluster.connection() as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO {table} VALUES ({value})")
    return table


# -- causal reads without a primary -------------------------------------------------------------


def test_causal_read_is_never_stale_while_no_primary_exists(restore: ReplicationCluster, cluster_cls: Any) -> None:
    """docs/cluster.md: a causal read sees every write committed through the
    cluster before it began; while no primary exists every replica serves
    reads. With both replicas behind (SQL threads stopped) and the primary
    demoted, a causal read must not be lent a replica that lacks the write: it
    ends within timeout + connect_timeout + 0.25 s with PoolTimeout, never with stale rows."""
    replication = restore
    cluster = cluster_cls(replication.url(), **KW)
    try:
        assert cluster.wait_ready(20, read_only=True)
        table = write_behind_stopped_replicas(cluster, replication, "STOP SLAVE SQL_THREAD", 42)
        replication.primary.admin_query("SET GLOBAL read_only=1")
        deadline = time.monotonic() + 10
        while cluster.get_stats()["problem"] == "" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cluster.get_stats()["problem"], "the demotion was not seen"
        # Plain reads flow from the (stale) replicas: the docs' "no primary" rule.
        with cluster.connection(read_only=True) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT COUNT(*), @@port FROM {table}")
            count, port = cur.fetchone()
        assert (count, port in [r.port for r in replication.replicas]) == (0, True)
        started = time.monotonic()
        with pytest.raises(PoolTimeout), cluster.connection(read_only=True, causal=True) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM {table}")
            pytest.fail(f"causal read lent while no node has the write: {cur.fetchone()}")
        assert time.monotonic() - started <= BORROW_BOUND
    finally:
        replication.primary.admin_query("SET GLOBAL read_only=0")
        cluster.close()
        pool_threads_ended()


# -- the asyncio surface ------------------------------------------------------------------------


def test_the_wrong_with_says_which_form_to_use() -> None:
    """docs/asyncio.md: a plain `with` on the asyncio pool or on its
    connection() raises a TypeError that says to use `async with`; the thread
    pool's `async with` says the reverse; the clusters are those pools' twins."""
    messages = []
    tcluster = ClusterPool(hosts=[("127.0.0.1", 9)], pre_create_num=0, connect_timeout=0.5)

    async def enter_threads_cluster() -> None:
        async with tcluster:  # type: ignore[attr-defined]
            pass

    try:
        with pytest.raises(TypeError) as raised:
            asyncio.run(enter_threads_cluster())
        messages.append(str(raised.value))
    finally:
        tcluster.close()

    async def enter_asyncio_cluster() -> None:
        acluster = AsyncClusterPool(hosts=[("127.0.0.1", 9)], pre_create_num=0)
        try:
            for wrong in (acluster, acluster.connection()):
                with pytest.raises(TypeError) as raised, wrong:  # type: ignore[attr-defined]
                    pass
                messages.append(str(raised.value))
        finally:
            await acluster.close()

    asyncio.run(enter_asyncio_cluster())
    pool_threads_ended()
    assert all("async with" in m for m in messages), messages


# -- Galera -----------------------------------------------------------------------------------


def writer_port(cluster: Any) -> int:
    with cluster.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT @@port")
        return int(cur.fetchone()[0])


def test_galera_writer_frozen_then_thawed(galera: GaleraCluster, cluster_cls: Any) -> None:
    """docs/cluster.md (Galera, galera_writer="single"): the writer frozen
    (SIGSTOP) under write borrows: each borrow ends within timeout +
    connect_timeout and the writes move to another synced node; while the node
    thaws and rejoins, never more than one node takes writes at a time."""
    cluster = cluster_cls(galera.url(), **{**KW, "read_timeout": 2})
    frozen: Optional[ThrowawayMariaDB] = None
    writers_seen: list[list[str]] = []

    def note_writers() -> None:
        writers_seen.append([n for n, node in cluster.get_stats()["nodes"].items() if node["writer"]])

    try:
        assert cluster.wait_ready(30)
        first = writer_port(cluster)
        frozen = next(s for s in galera.servers if s.port == first)
        frozen.pause()
        served: list[Optional[int]] = []
        borrow_times: list[float] = []
        deadline = time.monotonic() + 4
        for _ in range(100):
            if time.monotonic() > deadline:
                break
            note_writers()
            started = time.monotonic()
            try:
                conn = cluster.get_conn()
            except PoolTimeout:
                borrow_times.append(time.monotonic() - started)
                served.append(None)
                continue
            borrow_times.append(time.monotonic() - started)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT @@port")
                    served.append(int(cur.fetchone()[0]))
            except pymysql.err.MySQLError:
                served.append(None)  # a connection lent just before the probe saw the freeze
            finally:
                cluster.release(conn)
            time.sleep(0.05)
        frozen.resume()
        assert max(borrow_times) <= BORROW_BOUND, sorted(borrow_times)[-3:]
        moved = set(served[-5:])
        assert len(moved) == 1 and None not in moved and first not in moved, served
        # The thawed node rejoins (a donor may leave the synced state meanwhile).
        deadline = time.monotonic() + 30
        for _ in range(600):
            note_writers()
            if time.monotonic() > deadline or all(galera.synced(s) for s in galera.servers):
                break
            time.sleep(0.05)
        assert max(len(w) for w in writers_seen) == 1, [w for w in writers_seen if len(w) > 1][:3]
        writer_port(cluster)  # writes are served once the cluster is whole again
    finally:
        if frozen is not None:
            frozen.resume()
        cluster.close()
        pool_threads_ended()
        galera.wait_synced(90)


# -- a promotion that lacks an acknowledged write ----------------------------------------------


def test_a_promoted_replica_lacking_an_acknowledged_write_takes_no_writes(cluster_cls: Any) -> None:
    """DESIGN.md: a node is trusted for writes on evidence (GTID position,
    replication state), not because it answers now; docs/cluster.md compares
    @@gtid_binlog_pos with every other node's last known position before a
    suspect takes writes. Here both replicas stopped replicating, a write was
    acknowledged by the primary (and probed), the primary froze, and a careless
    orchestrator promoted a replica that lacks that write."""
    with ReplicationCluster() as replication:
        primary, promoted, _ = replication.servers
        cluster = cluster_cls(replication.url(), **KW)
        try:
            assert cluster.wait_ready(20, read_only=True)
            # Acknowledged by the primary alone.
            table = write_behind_stopped_replicas(cluster, replication, "STOP SLAVE", 1)
            node = f"127.0.0.1:{primary.port}"
            want = replication.gtid(primary)
            deadline = time.monotonic() + 10
            while cluster.get_stats()["nodes"][node]["gtid"] != want and time.monotonic() < deadline:
                time.sleep(0.05)
            assert cluster.get_stats()["nodes"][node]["gtid"] == want  # the pool saw the write's position
            primary.pause()
            try:
                deadline = time.monotonic() + 10
                while cluster.get_stats()["nodes"][node]["role"] != "down" and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert cluster.get_stats()["nodes"][node]["gtid"] == want  # a silent node keeps its position
                promoted.admin_query("RESET SLAVE ALL")
                promoted.admin_query("SET GLOBAL read_only=0")
                lent_on: Optional[tuple[int, int]] = None
                refusal: Optional[BaseException] = None
                try:
                    with cluster.connection(timeout=2) as conn, conn.cursor() as cur:
                        cur.execute(f"SELECT @@port, COUNT(*) FROM {table}")
                        lent_on = tuple(cur.fetchone())
                except (PoolError, pymysql.err.MySQLError) as exc:
                    refusal = exc
            finally:
                primary.resume()
        finally:
            cluster.close()
            pool_threads_ended()
    assert lent_on is None, (
        f"a write borrow was lent on port {lent_on[0]}, which holds {lent_on[1]} of 1 acknowledged rows"
    )
    # Refused for the evidence it lacks, named (not a mere timeout).
    assert isinstance(refusal, SplitBrainError) and f"does not include {node}'s {want}" in str(refusal), refusal
