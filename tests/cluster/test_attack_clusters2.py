"""A second outsider's attack on ClusterPool and AsyncClusterPool, written from
docs/cluster.md, docs/asyncio.md, docs/failure-handling.md and docs/stats.md
alone (not the source), where test_attack_clusters.py and test_adversaries.py
did not go: a node frozen (SIGSTOP) in the middle of a causal GTID wait, of a
return's rollback and of a probe; close() in the middle of a cancel storm;
borrows waiting for a writer when two nodes turn writable; absurd arguments.

A promise that holds is a plain test (it guards the shells' shared steering);
a defect is ``xfail(strict=True)`` with the defect in its reason. Every loop is
bounded in count and time; every bound asserted is a documented contract plus
SLACK for a loaded machine, never a speed. One topology per module.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, Optional

import pymysql
import pytest
from _load import port_of, timed
from test_attack_clusters import (
    KW,
    MAXSIZE,
    SLACK,
    SessionPeaks,
    book_errors,
    others,
    pool_threads_ended,
    quiet,
    sessions_left,
)

from pymysqlpool import AsyncClusterPool, ClusterPool, PoolClosed, PoolError, SplitBrainError
from support.mariadb_cluster import ReplicationCluster
from support.throwaway_mariadb import ThrowawayMariaDB
from support.waiting import wait_until

pytestmark = pytest.mark.cluster

CAUSAL_BOUND = KW["timeout"] + KW["connect_timeout"] + 0.25 + SLACK


def node(server: ThrowawayMariaDB) -> str:
    return f"127.0.0.1:{server.port}"


def quiet_stats(cluster: Any, seconds: float = 2 * KW["connect_timeout"] + 1 + SLACK) -> dict[str, Any]:
    """The stats once no borrow, dial or kill is in flight (bounded wait)."""
    busy = ("borrowed", "connecting", "waiting", "killing")
    wait_until(lambda: not any(cluster.get_stats()[g] for g in busy), seconds, interval=0.05)
    return dict(cluster.get_stats())


def new_table(cluster: Any, replication: ReplicationCluster) -> str:
    table = f"atk2_{uuid.uuid4().hex[:8]}"
    with cluster.connection() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
    replication.wait_caught_up()
    return table


# -- a node frozen in the middle of the cluster's own statements ------------------------------


@pytest.fixture
def delayed(restore: ReplicationCluster) -> Iterator[ReplicationCluster]:
    """Both replicas apply each transaction 3 s late (within max_lag=10): a
    causal read waits in MASTER_GTID_WAIT on a replica before it falls back."""
    for replica in restore.replicas:
        replica.admin_query("STOP SLAVE")
        replica.admin_query("CHANGE MASTER TO MASTER_DELAY=3")
        replica.admin_query("START SLAVE")
    try:
        yield restore
    finally:
        for replica in restore.replicas:
            replica.resume()
            replica.admin_query("STOP SLAVE")
            replica.admin_query("CHANGE MASTER TO MASTER_DELAY=0")
            replica.admin_query("START SLAVE")


def test_causal_read_whose_replica_freezes_mid_gtid_wait(delayed: ReplicationCluster, cluster_cls: Any) -> None:
    """docs/cluster.md: a causal read on a replica runs MASTER_GTID_WAIT (at
    most 1 s) before lending, bounded client-side by that limit + 0.25 s; if the
    wait times out or fails the read goes to the primary. Here the replicas
    freeze 0.3 s into the wait: the borrow still ends within timeout +
    connect_timeout + 0.25 s, served by the primary with the write, and the
    books are exact once the replicas thaw (the waiting session was abandoned)."""
    replication = delayed
    cluster = cluster_cls(replication.url(), **{**KW, "max_lag": 10, "read_timeout": 30})
    try:
        assert cluster.wait_ready(20, read_only=True)
        table = new_table(cluster, replication)
        assert wait_until(
            lambda: all(cluster.get_stats()["nodes"][node(r)]["reader"] for r in replication.replicas), 10
        )
        with cluster.connection() as conn, conn.cursor() as cur:
            cur.execute(f"INSERT INTO {table} (v) VALUES (1)")
        freezer = threading.Timer(0.3, lambda: [r.pause() for r in replication.replicas])
        freezer.start()

        def causal_read() -> tuple[int, int]:
            with cluster.connection(read_only=True, causal=True) as conn, conn.cursor() as cur:
                cur.execute(f"SELECT @@port, COUNT(*) FROM {table}")
                port, count = cur.fetchone()
                return int(port), int(count)

        try:
            elapsed, outcome = timed(causal_read, CAUSAL_BOUND + 30)
        finally:
            freezer.join(15)
            for replica in replication.replicas:
                replica.resume()
        assert elapsed <= CAUSAL_BOUND, (elapsed, outcome)
        assert outcome == (replication.primary.port, 1), outcome
        stats = cluster.get_stats()
        assert (stats["causal_waits"], stats["causal_fallbacks"]) == (1, 1), stats
        stats = quiet_stats(cluster)
        assert book_errors(stats) == []
    finally:
        cluster.close()
        pool_threads_ended()


def test_return_of_an_open_transaction_with_its_node_frozen(restore: ReplicationCluster, cluster_cls: Any) -> None:
    """docs/cluster.md, "Every wait is bounded": a return ends within
    connect_timeout even with every node frozen; docs/failure-handling.md: the
    ROLLBACK on return is bounded by connect_timeout, not read_timeout (30 s
    here). A write and a read borrow, each with an open transaction, are given
    back while their node is SIGSTOPped; after the thaw the books are exact and
    the transaction's row exists nowhere."""
    replication = restore
    connect_timeout = 1
    cluster = cluster_cls(
        replication.url(),
        **{**KW, "read_timeout": 30, "read_fallback_to_primary": False, "connect_timeout": connect_timeout},
    )
    try:
        assert cluster.wait_ready(20, read_only=True)
        table = new_table(cluster, replication)
        times = {}
        for kind in ("write", "read"):
            conn = cluster.get_conn(read_only=kind == "read")
            server = next(s for s in replication.servers if s.port == port_of(conn))
            conn.begin()
            with conn.cursor() as cur:
                if kind == "write":
                    cur.execute(f"INSERT INTO {table} (v) VALUES (7)")
                else:
                    cur.execute(f"SELECT COUNT(*) FROM {table}")  # a transaction is open: ROLLBACK on return
            server.pause()
            try:
                times[kind], outcome = timed(lambda c=conn: cluster.release(c), connect_timeout + SLACK + 30)
            finally:
                server.resume()
            assert outcome is None, outcome
        assert max(times.values()) <= connect_timeout + SLACK, times
        stats = quiet_stats(cluster)
        assert book_errors(stats) == []
        assert stats["borrows"] == stats["returns"] >= 3
        assert int(replication.primary.admin_query(f"SELECT COUNT(*) FROM {table}")[0][0]) == 0
        with cluster.connection(timeout=10) as conn, conn.cursor() as cur:  # writes flow again
            cur.execute(f"INSERT INTO {table} (v) VALUES (8)")
    finally:
        cluster.close()
        pool_threads_ended()


def test_a_frozen_node_delays_no_other_nodes_probe(restore: ReplicationCluster, cluster_cls: Any) -> None:
    """docs/cluster.md: each probe runs on a worker (asyncio: a task) of its own,
    so a node that hangs delays nobody else's probe nor the routing. One replica
    is frozen with probe_timeout=5 (its probe hangs that long); the other
    replica's replication is stopped meanwhile: it must leave the read rotation
    within a few probe intervals, not after the frozen node's probe timeout."""
    replication = restore
    frozen, watched = replication.replicas
    cluster = cluster_cls(replication.url(), **{**KW, "probe_timeout": 5})
    try:
        assert cluster.wait_ready(20, read_only=True)
        assert wait_until(lambda: cluster.get_stats()["nodes"][node(watched)]["reader"], 10)
        frozen.pause()
        try:
            time.sleep(0.5)  # a probe of the frozen node is now in flight (probe_interval 0.2)
            replication.stop_replication(watched)
            started = time.monotonic()
            left = wait_until(lambda: not cluster.get_stats()["nodes"][node(watched)]["reader"], 5, interval=0.02)
            elapsed = time.monotonic() - started
        finally:
            frozen.resume()
            replication.start_replication(watched)
        assert left and elapsed <= 1.0 + SLACK, elapsed
    finally:
        cluster.close()
        pool_threads_ended()


def test_a_read_whose_only_replica_is_frozen_falls_back_to_the_primary(
    restore: ReplicationCluster, cluster_cls: Any
) -> None:
    """docs/cluster.md: a node that stops answering: its pool gives up on the
    first failed connect and the borrow moves to another eligible node;
    read_fallback_to_primary: reads go to the primary when no replica
    qualifies. One replica is out of rotation (replication stopped), the other
    frozen while its probe hangs (probe_timeout=5): a read borrow with
    timeout=4 (connect_timeout 2) is served by the primary within its bound.
    Before the fix it raised PoolTimeout "every eligible node failed" (both
    shells): the primary reads only when no replica is routed, the frozen
    one stayed routed while its probe hung, and the reprobe its failed
    connect asked for could not start beside that probe."""
    replication = restore
    frozen, stopped = replication.replicas
    cluster = cluster_cls(replication.url(), **{**KW, "probe_timeout": 5})
    try:
        assert cluster.wait_ready(20, read_only=True)
        replication.stop_replication(stopped)
        assert wait_until(lambda: not cluster.get_stats()["nodes"][node(stopped)]["reader"], 10)
        assert wait_until(lambda: cluster.get_stats()["nodes"][node(frozen)]["reader"], 10)
        frozen.pause()
        try:
            time.sleep(0.5)  # a probe of the frozen node is in flight: it still looks like a replica

            def read() -> int:
                with cluster.connection(read_only=True, timeout=4) as conn:
                    return port_of(conn)

            elapsed, outcome = timed(read, 4 + KW["connect_timeout"] + SLACK + 20)
        finally:
            frozen.resume()
            replication.start_replication(stopped)
        assert outcome == replication.primary.port, outcome
        assert elapsed <= 4 + KW["connect_timeout"] + SLACK, elapsed
    finally:
        cluster.close()
        pool_threads_ended()


def test_close_with_a_probe_stuck_on_a_frozen_node_ends_within_probe_timeout(restore: ReplicationCluster) -> None:
    """docs/cluster.md: ClusterPool.close() returns once its monitor and probe
    threads ended (a probe in flight ends within probe_timeout)."""
    replication = restore
    frozen = replication.replicas[0]
    cluster = ClusterPool(replication.url(), **{**KW, "probe_timeout": 2})
    closed = False
    try:
        assert cluster.wait_ready(20, read_only=True)
        frozen.pause()
        try:
            cluster.reprobe(replication.servers.index(frozen))
            time.sleep(0.3)
            elapsed, outcome = timed(cluster.close, 2 + SLACK + 30)
            closed = True
            left = [t.name for t in threading.enumerate() if t.name.startswith("pymysqlpool")]
        finally:
            frozen.resume()
        assert outcome is None, outcome
        assert elapsed <= 2 + SLACK, elapsed
        assert left == []
    finally:
        if not closed:
            cluster.close()
        pool_threads_ended()


# -- the thread shell under flapping nodes and abandoned statements ----------------------------


def test_thread_storm_of_abandoned_statements_on_flapping_nodes(restore: ReplicationCluster) -> None:
    """ClusterPool, 12 threads of writes, transactions, plain and causal reads
    whose statements outlive read_timeout=0.5 one time in four (abandoned
    mid-answer: docs/failure-handling.md, kill_on_abandon), while the primary
    and a replica are frozen and thawed every few hundred ms for 3 s (each freeze
    shorter than connect_timeout, so every KILL can reach its server). Every
    borrow ends within timeout + connect_timeout (+ 0.25 s causal); no node's
    server ever holds more of the pool's sessions than maxsize + its probe; no
    borrower sees another's rows; the books are exact and close() leaves no
    session."""
    replication = restore
    flapped = [replication.primary, replication.replicas[0]]
    cluster = ClusterPool(replication.url(), **{**KW, "read_timeout": 0.5})
    borrow_times: list[float] = []
    foreign: list[Any] = []
    outcomes: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def note(what: str) -> None:
        with lock:
            outcomes[what] = outcomes.get(what, 0) + 1

    def borrower() -> None:
        for _ in range(2000):
            if stop.is_set():
                return
            kind = random.choice(["write", "txn", "read", "causal"])
            token = random.randrange(1 << 40)
            started = time.monotonic()
            try:
                conn = cluster.get_conn(read_only=kind in ("read", "causal"), causal=kind == "causal")
            except PoolError as exc:
                with lock:
                    borrow_times.append(time.monotonic() - started)
                note(type(exc).__name__)
                continue
            with lock:
                borrow_times.append(time.monotonic() - started)
            failed = False
            try:
                with conn.cursor() as cur:
                    if kind == "txn":
                        conn.begin()
                    if kind in ("write", "txn"):
                        cur.execute(f"INSERT INTO {table} (v) VALUES (1)")
                    cur.execute("SELECT %s, SLEEP(%s)", (token, random.choice([0, 0, 0.05, 1])))
                    row = cur.fetchone()
                    if row[0] != token:
                        foreign.append((row, token))
                    if kind == "txn":
                        conn.commit()
                note("ok")
            except pymysql.err.MySQLError as exc:
                failed = True
                note(f"{type(exc).__name__}:{exc.args[0] if exc.args else ''}")
            finally:
                cluster.release(conn, failed=failed)

    def flapper() -> None:
        deadline = time.monotonic() + 3
        for i in range(100):
            if time.monotonic() > deadline:
                break
            server = flapped[i % 2]
            server.pause()
            try:
                time.sleep(random.uniform(0.15, 0.4))
            finally:
                server.resume()
            time.sleep(random.uniform(0.1, 0.3))

    try:
        assert cluster.wait_ready(20, read_only=True)
        table = new_table(cluster, replication)
        threads = [threading.Thread(target=borrower, name=f"atk2-storm-{i}", daemon=True) for i in range(12)]
        freezer = threading.Thread(target=flapper, name="atk2-flapper", daemon=True)
        with SessionPeaks(replication.servers, 12) as sampler:
            freezer.start()
            for thread in threads:
                thread.start()
            freezer.join(15)
            stop.set()
            for thread in threads:
                thread.join(KW["timeout"] + KW["connect_timeout"] + 2 * SLACK + 5)
        assert not freezer.is_alive() and not any(t.is_alive() for t in threads)
        stats = quiet_stats(cluster)
    finally:
        for server in flapped:
            server.resume()
        cluster.close()
        pool_threads_ended()
    assert outcomes.get("ok", 0) > 20 and any(k.endswith(":2013") for k in outcomes), outcomes
    assert max(borrow_times) <= CAUSAL_BOUND, sorted(borrow_times)[-5:]
    assert foreign == []
    assert stats["kills"] > 0 and stats["kill_failures"] == 0, {k: stats[k] for k in ("kills", "kill_failures")}
    over = {port: (peak, sampler.at_peak[port]) for port, peak in sampler.peak.items() if peak > MAXSIZE + 1}
    assert over == {}
    assert book_errors(stats) == []
    assert sessions_left(replication.servers) == {s.port: [] for s in replication.servers}


# -- a probe missed at the moment of a failover ----------------------------------------------


def test_a_promotion_lacking_a_write_acknowledged_after_the_last_probe_takes_no_writes() -> None:
    """docs/cluster.md: a node becoming writable while the primary does not
    answer "may hold acknowledged writes the new one lacks" and is a suspect;
    DESIGN.md: a node is trusted for writes on evidence, a missed probe is
    evidence of nothing. Here the replica stopped replicating, a write was
    acknowledged through the cluster (its GTID came back in the OK packet),
    and the primary froze at once, before its next probe (probe_interval=1)
    could read the new position (retried, at most 3 times, if a probe saw it);
    then the replica was promoted. The pool itself holds the acknowledged GTID
    (the causal position), so a write borrow must not be lent the promoted
    node, which lacks that write. (test_attack_clusters.py covers the case
    where the primary's probe did see the write: refused.) Before the fix the
    borrow was lent the promoted node, holding 0 of the acknowledged rows: the
    evidence compared the last probed positions only."""
    with ReplicationCluster(replicas=1) as replication:
        primary, promoted = replication.servers
        cluster = ClusterPool(replication.url(), **{**KW, "probe_interval": 1.0, "probe_timeout": 0.5})
        lent_on: Optional[tuple[int, int]] = None
        refusal: Optional[BaseException] = None
        try:
            assert cluster.wait_ready(20, read_only=True)
            table = new_table(cluster, replication)
            promoted.admin_query("STOP SLAVE")
            stats = cluster.get_stats
            missed = False
            for _ in range(3):
                before = replication.gtid(primary)
                assert wait_until(lambda b=before: stats()["nodes"][node(primary)]["gtid"] == b, 5)
                with cluster.connection() as conn, conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {table} (v) VALUES (1)")  # acknowledged: only the primary has it
                primary.pause()
                assert wait_until(lambda: stats()["nodes"][node(primary)]["role"] == "down", 10)
                missed = stats()["nodes"][node(primary)]["gtid"] == before
                if missed:
                    break
                primary.resume()  # a probe read the write's position: not the case tried here
            assert missed, "every try, a probe saw the write before the freeze"
            try:
                promoted.admin_query("RESET SLAVE ALL")
                promoted.admin_query("SET GLOBAL read_only=0")
                try:
                    with cluster.connection(timeout=3) as conn, conn.cursor() as cur:
                        cur.execute(f"SELECT @@port, COUNT(*) FROM {table}")
                        lent_on = tuple(cur.fetchone())
                except (PoolError, pymysql.err.MySQLError) as exc:
                    refusal = exc
            finally:
                primary.resume()
        finally:
            primary.resume()
            cluster.close()
            pool_threads_ended()
    assert lent_on is None, f"a write borrow was lent port {lent_on[0]}, holding {lent_on[1]} acknowledged rows of 1+"
    assert isinstance(refusal, SplitBrainError), refusal


# -- close() in the middle of a cancel storm ------------------------------------------------


def test_close_in_the_middle_of_a_cancel_storm(replication: ReplicationCluster) -> None:
    """docs/asyncio.md / cluster.md: `await cluster.close()` stops the probes
    and closes the node pools while 24 tasks borrow (writes, transactions,
    plain and causal reads, statements up to 1 s) and a canceller cancels at
    random. close() is prompt; every borrower ends within its bound with its
    result, a cancellation or PoolClosed (nothing else); afterwards no task
    is left, no session stays on any node, the books are exact, and a new
    borrow raises PoolClosed."""

    async def scenario() -> dict[str, Any]:
        cluster = AsyncClusterPool(replication.url(), **KW)
        await cluster.open()
        assert await cluster.wait_ready(20, read_only=True)
        table = f"atk2_{uuid.uuid4().hex[:8]}"
        async with cluster.connection() as conn, conn.cursor() as cur:
            await cur.execute(f"CREATE TABLE {table} (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        await asyncio.to_thread(replication.wait_caught_up)
        outcomes: dict[str, int] = {}
        ends: list[float] = []

        async def borrower() -> None:
            kind = random.choice(["write", "txn", "read", "causal"])
            what = "ok"
            try:
                read_only, is_causal = kind in ("read", "causal"), kind == "causal"
                async with cluster.connection(read_only=read_only, causal=is_causal) as conn, conn.cursor() as cur:
                    if kind == "txn":
                        await conn.begin()
                    if kind in ("write", "txn"):
                        await cur.execute(f"INSERT INTO {table} (v) VALUES (1)")
                    await cur.execute("SELECT SLEEP(%s)", (random.choice([0, 0, 0.05, 0.3, 1]),))
                    await cur.fetchone()
                    if kind == "txn":
                        await conn.commit()
            except asyncio.CancelledError:
                what = "cancelled"
                raise
            except BaseException as exc:
                what = type(exc).__name__
            finally:
                outcomes[what] = outcomes.get(what, 0) + 1
                ends.append(time.monotonic())

        tasks: set[asyncio.Task[None]] = set()
        close_task: Optional[asyncio.Task[None]] = None
        close_started = close_seconds = 0.0
        deadline = time.monotonic() + 3.0
        for _ in range(2000):
            if time.monotonic() > deadline:
                break
            if close_task is None:
                while len(tasks) < 24:
                    tasks.add(asyncio.ensure_future(borrower()))
            if close_task is None and time.monotonic() > deadline - 1.5:
                close_started = time.monotonic()
                close_task = asyncio.ensure_future(cluster.close())
            await asyncio.sleep(random.random() * 0.02)
            for task in tasks:
                if random.random() < 0.1:
                    task.cancel()
            tasks = {t for t in tasks if not t.done()}
            if close_task is not None and close_task.done() and not close_seconds:
                close_seconds = time.monotonic() - close_started
        assert close_task is not None
        await asyncio.wait_for(asyncio.shield(close_task), 30)
        close_seconds = close_seconds or time.monotonic() - close_started
        pending: set[asyncio.Task[None]] = set()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=KW["timeout"] + KW["connect_timeout"] + 1 + SLACK)
        late = len(pending)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        after: Any = None
        try:
            await cluster.get_conn(timeout=1)
        except BaseException as exc:
            after = exc
        stats = await quiet(cluster, 2 * KW["connect_timeout"] + 1 + SLACK)
        await asyncio.sleep(0.1)
        return {
            "outcomes": outcomes,
            "close_seconds": close_seconds,
            "late": late,
            "after": after,
            "stats": stats,
            "left_tasks": others(asyncio.current_task()),
            "last_end": max(ends) - close_started if ends else 0.0,
        }

    seen = asyncio.run(scenario())
    outcomes = seen["outcomes"]
    assert outcomes.get("cancelled", 0) > 10 and outcomes.get("ok", 0) > 10, outcomes
    assert set(outcomes) <= {"ok", "cancelled", "PoolClosed"}, outcomes
    assert seen["close_seconds"] <= KW["connect_timeout"] + SLACK, seen["close_seconds"]
    assert seen["late"] == 0, seen
    assert isinstance(seen["after"], PoolClosed), repr(seen["after"])
    assert seen["left_tasks"] == []
    assert book_errors(seen["stats"]) == []
    assert sessions_left(replication.servers) == {s.port: [] for s in replication.servers}


# -- two writable nodes while writes wait for a primary ---------------------------------------


def both_writable(*servers: ThrowawayMariaDB) -> None:
    """SET GLOBAL read_only=0 on every server at the same instant (connections
    opened first, the statements released by one barrier): no probe round can
    see one writable without the other but by a sub-millisecond chance."""
    conns = [pymysql.connect(**{**s.connect_kwargs(), "autocommit": True, "read_timeout": 10}) for s in servers]
    barrier = threading.Barrier(len(conns))

    def flip(conn: Any) -> None:
        with conn.cursor() as cur:
            barrier.wait(10)
            cur.execute("SET GLOBAL read_only=0")

    threads = [threading.Thread(target=flip, args=(c,), daemon=True) for c in conns]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
    finally:
        for conn in conns:
            conn.close()


def test_writers_waiting_for_a_primary_meet_a_split_brain(restore: ReplicationCluster, cluster_cls: Any) -> None:
    """docs/cluster.md: with no primary, write borrows wait for the new one;
    with two writable nodes, write borrows raise SplitBrainError at once
    ("writing to both would make their histories diverge"). The primary is
    demoted (four writers queue), then a replica stops replicating and it and
    the old primary turn writable at the same instant, while the writers go on
    borrowing for 1.5 s. Each node is probed on its own schedule, so the
    waiters may be lent the node seen writable first; but never both nodes,
    and no borrow that began once the split brain was reported is lent.
    (A replica made writable while it still replicates takes no writes and is
    no split brain for the pool; the split-brain drill stops it first too.)"""
    replication = restore
    primary, rogue = replication.primary, replication.replicas[0]
    cluster = cluster_cls(replication.url(), **{**KW, "timeout": 8})
    outcomes: list[tuple[float, Any]] = []
    lock = threading.Lock()
    flipped = threading.Event()
    reported: list[float] = []

    def writer() -> None:
        end: Optional[float] = None
        for _ in range(1000):
            if end is None and flipped.is_set():
                end = time.monotonic() + 1.5
            if end is not None and time.monotonic() > end:
                break
            started = time.monotonic()
            try:
                with cluster.connection(timeout=8) as conn:
                    result: Any = port_of(conn)
            except (PoolError, pymysql.err.MySQLError) as exc:
                result = exc
            with lock:
                outcomes.append((started, result))
            time.sleep(0.01)

    threads = [threading.Thread(target=writer, name=f"atk2-writer-{i}", daemon=True) for i in range(4)]
    try:
        assert cluster.wait_ready(20, read_only=True)
        primary.admin_query("SET GLOBAL read_only=1")
        assert wait_until(lambda: cluster.get_stats()["problem"] != "", 10)
        rogue.admin_query("STOP SLAVE")
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # queued: no writer exists
        both_writable(primary, rogue)
        flipped.set()
        if wait_until(lambda: "split brain" in cluster.get_stats()["problem"], 5, interval=0.005):
            reported.append(time.monotonic())
        for thread in threads:
            thread.join(8 + KW["connect_timeout"] + SLACK + 10)
    finally:
        rogue.admin_query("SET GLOBAL read_only=1")
        primary.admin_query("SET GLOBAL read_only=0")
        rogue.admin_query("START SLAVE")
        cluster.close()
        pool_threads_ended()
    assert reported and not any(t.is_alive() for t in threads)
    lent_on = {r for _, r in outcomes if isinstance(r, int)}
    assert len(lent_on) <= 1, f"waiting writers were lent two writable nodes: {sorted(lent_on)}"
    late = [(s - reported[0], r) for s, r in outcomes if s > reported[0] + 0.01 and not isinstance(r, SplitBrainError)]
    assert late == []
    assert any(isinstance(r, SplitBrainError) for _, r in outcomes)


# -- absurd arguments -------------------------------------------------------------------------


def closed_port_hosts() -> list[tuple[str, int]]:
    return [("127.0.0.1", 1), ("127.0.0.1", 2)]


@pytest.mark.parametrize("cls", [ClusterPool, AsyncClusterPool], ids=["thread", "asyncio"])
@pytest.mark.parametrize("value", [-1, 0, 61, math.nan, math.inf])
def test_probe_timeout_message_states_the_rule(cls: Any, value: float) -> None:
    """docs/cluster.md: probe_timeout is more than 0 and at most 60 s. Every
    value outside says so, as probe_interval's message does (before: NaN and
    negatives got the generic "must be >= 0 seconds", which NaN is not and 0 is)."""
    with pytest.raises(ValueError) as raised:
        cls(hosts=closed_port_hosts(), probe_timeout=value, pre_create_num=0)
    assert "probe_timeout must be > 0 and <= 60 seconds" in str(raised.value)


@pytest.mark.parametrize("timeout", [math.nan, -1, "1", None])
def test_the_cluster_waits_refuse_an_absurd_timeout_at_once(timeout: Any) -> None:
    """get_conn(timeout=nan) raises ValueError naming `timeout` at once; the
    cluster's other waits take the same seconds (docs/cluster.md: wait_ready(timeout),
    wait_probed(timeout)) and must neither hang nor fail inside. Before the fix,
    wait_ready(nan) with no node answering never returned (both shells), and a
    str or None timeout failed with an internal TypeError or was taken as "forever"."""
    expected = ValueError if isinstance(timeout, float) or timeout == -1 else TypeError
    cluster = ClusterPool(hosts=closed_port_hosts(), pre_create_num=0, connect_timeout=0.5)
    try:
        for wait in (cluster.wait_ready, cluster.wait_probed):
            elapsed, outcome = timed(lambda w=wait: w(timeout), 5)
            assert elapsed < 1 and isinstance(outcome, expected) and "timeout" in str(outcome), outcome
    finally:
        cluster.close()

    async def asyncio_shell() -> list[Any]:
        acluster = AsyncClusterPool(hosts=closed_port_hosts(), pre_create_num=0, connect_timeout=0.5)
        outcomes: list[Any] = []
        try:
            for wait in (acluster.wait_ready, acluster.wait_probed):
                try:
                    outcomes.append(await asyncio.wait_for(wait(timeout), 5))
                except Exception as exc:
                    outcomes.append(exc)
        finally:
            await acluster.close()
        return outcomes

    outcomes = asyncio.run(asyncio_shell())
    pool_threads_ended()
    assert all(isinstance(o, expected) and "timeout" in str(o) for o in outcomes), outcomes


# -- cancellations landing during a switchover (asyncio) ---------------------------------------


def test_cancel_storm_during_a_switchover(restore: ReplicationCluster) -> None:
    """docs/cluster.md drill b (switchover) under an asyncio cancel storm:
    cancellations land in borrows waiting for the new primary, in 1290
    errors from the demoted one, in causal waits across the change. Every
    borrow ends within timeout + connect_timeout (+ 0.25 s causal); every
    acknowledged write is on the new primary; the only errors are 1290 on
    the old primary (or a PoolTimeout while no primary exists); the books are
    exact and close() leaves no task and no session. The module's topology
    keeps the new primary (restore re-attaches the old one as a replica)."""
    replication = restore
    new = replication.replicas[0]

    async def scenario() -> dict[str, Any]:
        cluster = AsyncClusterPool(replication.url(), **KW)
        await cluster.open()
        assert await cluster.wait_ready(20, read_only=True)
        table = f"atk2_{uuid.uuid4().hex[:8]}"
        async with cluster.connection() as conn, conn.cursor() as cur:
            await cur.execute(f"CREATE TABLE {table} (id INT AUTO_INCREMENT PRIMARY KEY, v BIGINT)")
        await asyncio.to_thread(replication.wait_caught_up)
        outcomes: dict[str, int] = {}
        acked: list[int] = []
        times: list[float] = []

        async def borrower() -> None:
            causal = random.random() < 0.3
            token = random.randrange(1 << 40)
            started = time.monotonic()
            what = "ok"
            try:
                async with cluster.connection(read_only=causal, causal=causal) as conn, conn.cursor() as cur:
                    times.append(time.monotonic() - started)
                    if causal:
                        await cur.execute(f"SELECT COUNT(*) FROM {table}")
                        await cur.fetchone()
                    else:
                        await cur.execute(f"INSERT INTO {table} (v) VALUES (%s)", (token,))
                        acked.append(token)
                    await cur.execute("SELECT SLEEP(%s)", (random.choice([0, 0.02, 0.2]),))
                    await cur.fetchone()
            except asyncio.CancelledError:
                what = "cancelled"
                raise
            except pymysql.err.MySQLError as exc:
                what = f"{type(exc).__name__}:{exc.args[0] if exc.args else ''}"
            except PoolError as exc:
                times.append(time.monotonic() - started)
                what = type(exc).__name__
            finally:
                outcomes[what] = outcomes.get(what, 0) + 1

        tasks: set[asyncio.Task[None]] = set()
        switch: Optional[asyncio.Future[None]] = None
        started = time.monotonic()
        for _ in range(2000):
            elapsed = time.monotonic() - started
            if elapsed > 3.5:
                break
            if switch is None and elapsed > 1.0:
                switch = asyncio.ensure_future(asyncio.to_thread(replication.switchover, new))
            while len(tasks) < 16:
                tasks.add(asyncio.ensure_future(borrower()))
            await asyncio.sleep(random.random() * 0.02)
            for task in tasks:
                if random.random() < 0.1:
                    task.cancel()
            tasks = {t for t in tasks if not t.done()}
        assert switch is not None
        await asyncio.wait_for(switch, 60)
        if tasks:
            await asyncio.wait(tasks, timeout=KW["timeout"] + KW["connect_timeout"] + 1 + SLACK)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        async with cluster.connection(timeout=10) as conn, conn.cursor() as cur:  # writes flow to the new primary
            await cur.execute("SELECT @@port")
            writer = (await cur.fetchone())[0]
        stats = await quiet(cluster, 2 * KW["connect_timeout"] + 1 + SLACK)
        await asyncio.wait_for(cluster.close(), 30)
        await asyncio.sleep(0.1)
        return {
            "outcomes": outcomes,
            "acked": acked,
            "times": times,
            "writer": writer,
            "stats": stats,
            "table": table,
            "left_tasks": others(asyncio.current_task()),
        }

    seen = asyncio.run(scenario())
    outcomes = seen["outcomes"]
    assert outcomes.get("cancelled", 0) > 10 and outcomes.get("ok", 0) > 20, outcomes
    assert set(outcomes) <= {"ok", "cancelled", "OperationalError:1290", "PoolTimeout"}, outcomes
    assert max(seen["times"]) <= CAUSAL_BOUND, sorted(seen["times"])[-5:]
    assert seen["writer"] == new.port
    held = {int(r[0]) for r in new.admin_query(f"SELECT v FROM {seen['table']}")}
    assert set(seen["acked"]) - held == set()  # no acknowledged write lost
    assert book_errors(seen["stats"]) == []
    assert seen["left_tasks"] == []
    assert sessions_left(replication.servers) == {s.port: [] for s in replication.servers}
