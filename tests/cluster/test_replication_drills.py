"""Drills a-e and g on real MariaDB GTID replication: a primary and two replicas.

Figures (follow times, errors clients saw) go to the drill summary; the
assertions hold the pool to the issue's promises.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest
from _load import Load, code_of, make_table, port_of, seconds_until

from pymysqlpool import ClusterPool, PoolTimeout, SplitBrainError
from support.mariadb_cluster import ReplicationCluster
from support.throwaway_mariadb import ThrowawayMariaDB
from support.waiting import wait_until

pytestmark = pytest.mark.cluster

# What a query in flight sees when its server dies or its connection is dropped.
GONE = {2013, 2006, 2003, "InterfaceError"}
FOLLOW_LIMIT = 1.0  # seconds: the bound for following a promotion


def node_stats(pool: ClusterPool, server: ThrowawayMariaDB) -> dict[str, Any]:
    stats: dict[str, Any] = pool.get_stats()["nodes"][f"127.0.0.1:{server.port}"]
    return stats


def count(server: ThrowawayMariaDB, table: str) -> int:
    return int(server.admin_query(f"SELECT COUNT(*) FROM {table}")[0][0])


# -- a. primary SIGKILL under load, promotion by the test -------------------------


def test_a_primary_killed_under_load(make_cluster_pool: Callable[..., ClusterPool], drill_report: Any) -> None:
    with ReplicationCluster(semisync=True) as replication:
        pool = make_cluster_pool(replication.url())
        table = make_table(pool, replication)
        load = Load(pool, table, writers=8, readers=8).start()
        try:
            load.wait_for_successes("writer", 50)
            old = replication.primary
            killed_at = time.monotonic()
            old.kill()
            time.sleep(1.0)  # the orchestrator's detection delay: writers wait meanwhile
            new = max(replication.replicas, key=lambda s: replication.gtid(s))
            replication.promote(new)
            promoted_at = time.monotonic()
            load.wait_for_successes("writer", 50)
        finally:
            load.stop()
        resumed = load.first_success_after("writer", promoted_at)
        assert resumed is not None, "writes never resumed"
        follow = resumed - promoted_at
        writer_errors = load.errors("writer")
        reader_errors = load.errors("reader")
        # Only queries in flight when the primary died (or lent just before the
        # monitor noticed) may fail; no borrow gives up waiting for the new primary.
        assert all(code_of(o.error) in GONE for o in writer_errors), [o.error for o in writer_errors]
        assert all(o.at < killed_at + 1.0 for o in writer_errors)
        assert len(writer_errors) <= 2 * load.writers
        assert all(code_of(o.error) in GONE for o in reader_errors), [o.error for o in reader_errors]
        assert len(reader_errors) <= load.readers
        assert not any(isinstance(o.error, PoolTimeout) for o in load.outcomes)
        assert {o.port for o in load.begun_after("writer", killed_at)} == {new.port}
        assert follow <= FOLLOW_LIMIT, f"writes resumed {follow:.3f} s after the promotion"
        # Semi-synchronous (AFTER_SYNC): every acknowledged row is on the new primary.
        acked = load.acknowledged_ids()
        ids = {row[0] for row in new.admin_query(f"SELECT id FROM {table}")}
        lost = acked - ids
        assert not lost, f"{len(lost)} acknowledged rows lost"
        drill_report(
            "a. primary SIGKILL (semi-sync)",
            follow_s=follow,
            writer_errors=len(writer_errors),
            reader_errors=len(reader_errors),
            acked_rows=len(acked),
            lost_rows=len(lost),
            reads_during_outage=len(load.successes("reader", killed_at)) - len(load.successes("reader", promoted_at)),
        )


# -- b. switchover: old primary read_only=1, another promoted ----------------------


def test_b_switchover_drops_1290_connections_and_follows(
    make_cluster_pool: Callable[..., ClusterPool], drill_report: Any
) -> None:
    with ReplicationCluster() as replication:
        pool = make_cluster_pool(replication.url())
        table = make_table(pool, replication)
        old = replication.primary
        new = replication.replicas[0]
        load = Load(pool, table, writers=8, readers=8).start()
        try:
            load.wait_for_successes("writer", 50)
            started = time.monotonic()
            replication.switchover(new)
            promoted_at = time.monotonic()
            load.wait_for_successes("writer", 50)
        finally:
            load.stop()
        resumed = load.first_success_after("writer", promoted_at)
        assert resumed is not None
        follow = max(resumed - promoted_at, 0.0)
        writer_errors = load.errors("writer")
        codes = {code_of(o.error) for o in writer_errors}
        assert codes <= {1290}, codes
        assert all(started <= o.at for o in writer_errors)
        # Each connection that got 1290 was dropped, not reused.
        stats = node_stats(pool, old)
        refused = len(writer_errors)
        assert stats["wrong_node_errors"] == refused
        assert stats["closed_wrong_node"] >= refused
        assert not load.errors("reader"), [o.error for o in load.errors("reader")]
        # No write landed on the old primary: it replicates from the new one
        # without conflict and holds exactly the same rows.
        replication.wait_caught_up()
        assert count(old, table) == count(new, table) == len(load.acknowledged_ids())
        assert replication.slave_status(old)[0]["Slave_SQL_Running"] == "Yes"
        assert follow <= FOLLOW_LIMIT, f"writes resumed {follow:.3f} s after the promotion"
        drill_report("b. switchover", follow_s=follow, writer_errors_1290=refused, reader_errors=0)


# -- c. replication stopped, lag beyond max_lag ------------------------------------


def test_c_stopped_or_lagging_replica_leaves_read_rotation(
    restore: ReplicationCluster, make_cluster_pool: Callable[..., ClusterPool], drill_report: Any
) -> None:
    replication = restore
    pool = make_cluster_pool(replication.url(), max_lag=1)
    table = make_table(pool, replication)
    stopped, lagging = replication.replicas
    assert seconds_until(lambda: node_stats(pool, stopped)["reader"] and node_stats(pool, lagging)["reader"], 5) < 5

    replication.stop_replication(stopped)
    out_after = seconds_until(lambda: not node_stats(pool, stopped)["reader"], 5)
    ports = set()
    for _ in range(20):
        with pool.connection(read_only=True) as conn:
            ports.add(port_of(conn))
    assert ports == {lagging.port}
    replication.start_replication(stopped)
    back_after = seconds_until(lambda: node_stats(pool, stopped)["reader"], 5)

    # Lag: the replica applies events 3 s late while the primary keeps writing.
    lagging.admin_query("STOP SLAVE")
    lagging.admin_query("CHANGE MASTER TO MASTER_DELAY=3")
    lagging.admin_query("START SLAVE")
    assert wait_until(lambda: node_stats(pool, lagging)["reader"], 10)
    stop = threading.Event()

    def write() -> None:
        for _ in range(400):
            if stop.wait(0.05):
                return
            replication.primary.admin_query(f"INSERT INTO {table} (v) VALUES (2)")

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        lag_out = seconds_until(lambda: lagged_out(pool, lagging), 10)
    finally:
        stop.set()
        writer.join(10)
    lagging.admin_query("STOP SLAVE")
    lagging.admin_query("CHANGE MASTER TO MASTER_DELAY=0")
    lagging.admin_query("START SLAVE")
    lag_back = seconds_until(lambda: node_stats(pool, lagging)["reader"], 10)
    drill_report(
        "c. replication stopped / lag",
        stopped_out_s=out_after,
        restarted_back_s=back_after,
        lag_out_s=lag_out,
        caught_up_back_s=lag_back,
    )
    assert out_after <= FOLLOW_LIMIT + 0.5


def lagged_out(pool: ClusterPool, server: ThrowawayMariaDB) -> bool:
    stats = node_stats(pool, server)
    return stats["lag"] is not None and stats["lag"] > 1 and not stats["reader"]


# -- d. replica killed and restarted ------------------------------------------------


def test_d_replica_killed_and_restarted(
    restore: ReplicationCluster, make_cluster_pool: Callable[..., ClusterPool], drill_report: Any
) -> None:
    replication = restore
    pool = make_cluster_pool(replication.url())
    table = make_table(pool, replication)
    victim, survivor = replication.replicas
    assert wait_until(lambda: node_stats(pool, victim)["reader"], 5)
    load = Load(pool, table, writers=2, readers=8).start()
    try:
        load.wait_for_successes("reader", 100)
        killed_at = time.monotonic()
        victim.kill()
        out_after = seconds_until(lambda: not node_stats(pool, victim)["reader"], 5)
        out_at = time.monotonic()
        load.wait_for_successes("reader", 100)
        restarted_at = time.monotonic()
        victim.start()
        back_after = seconds_until(lambda: node_stats(pool, victim)["reader"], 15)
        load.wait_for_successes("reader", 200)
        rejoined = {o.port for o in load.successes("reader", restarted_at + back_after)}
    finally:
        load.stop()
    reader_errors = load.errors("reader")
    assert all(code_of(o.error) in GONE for o in reader_errors), [o.error for o in reader_errors]
    assert all(o.at < killed_at + 1.0 for o in reader_errors)
    assert len(reader_errors) <= load.readers
    assert not load.errors("writer")
    assert {o.port for o in load.begun_after("reader", out_at) if o.at < restarted_at} == {survivor.port}
    assert victim.port in rejoined
    drill_report(
        "d. replica SIGKILL + restart",
        out_of_rotation_s=out_after,
        back_in_rotation_s=back_after,
        reader_errors=len(reader_errors),
        writer_errors=0,
    )


# -- e. causal reads -------------------------------------------------------------------


PAIRS = 2000


def stale_reads(pool: ClusterPool, table: str, causal: bool, pairs: int) -> int:
    stale = 0
    for _ in range(pairs):
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute(f"INSERT INTO {table} (v) VALUES (3)")
            row_id = cur.lastrowid
        with pool.connection(read_only=True, causal=causal) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM {table} WHERE id = %s", (row_id,))
            if cur.fetchone()[0] != 1:
                stale += 1
    return stale


def test_e_causal_reads_see_every_earlier_write(
    restore: ReplicationCluster, make_cluster_pool: Callable[..., ClusterPool], drill_report: Any
) -> None:
    replication = restore
    pool = make_cluster_pool(replication.url(), read_fallback_to_primary=False)
    table = make_table(pool, replication)
    assert wait_until(
        lambda: (
            len(pool.get_stats()["nodes"]) == 3 and all(node_stats(pool, r)["reader"] for r in replication.replicas)
        ),
        5,
    )
    started = time.monotonic()
    causal_stale = stale_reads(pool, table, True, PAIRS)
    causal_s = time.monotonic() - started
    stats = pool.get_stats()
    started = time.monotonic()
    plain_stale = stale_reads(pool, table, False, PAIRS)
    plain_s = time.monotonic() - started
    drill_report(
        "e. write-then-read pairs",
        pairs=PAIRS,
        stale_causal=causal_stale,
        stale_plain=plain_stale,
        causal_fallbacks=stats["causal_fallbacks"],
        causal_pair_ms=causal_s / PAIRS * 1000,
        plain_pair_ms=plain_s / PAIRS * 1000,
    )
    assert causal_stale == 0
    assert stats["causal_waits"] >= PAIRS - stats["causal_fallbacks"]


def test_e_clean_and_read_borrows_cost_no_gtid_round_trip(
    restore: ReplicationCluster, make_cluster_pool: Callable[..., ClusterPool]
) -> None:
    replication = restore
    pool = make_cluster_pool(replication.url())
    table = make_table(pool, replication)
    before = pool._causal_text
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {table}")
    assert pool._causal_text == before  # nothing written: position not asked for
    with pool.connection() as conn, conn.cursor() as cur:
        conn.autocommit(False)
        cur.execute(f"INSERT INTO {table} (v) VALUES (4)")
        conn.commit()
    after = pool._causal_text
    assert after != before
    assert after == str(replication.primary.admin_query("SELECT @@gtid_binlog_pos")[0][0])


# -- split brain -------------------------------------------------------------------------


def test_split_brain_refuses_writes_keeps_reads(
    restore: ReplicationCluster, make_cluster_pool: Callable[..., ClusterPool], drill_report: Any
) -> None:
    replication = restore
    pool = make_cluster_pool(replication.url())
    rogue = replication.replicas[0]
    rogue.admin_query("STOP SLAVE")
    rogue.admin_query("SET GLOBAL read_only=0")
    detected = seconds_until(lambda: "split brain" in pool.get_stats()["problem"], 5)
    started = time.monotonic()
    with pytest.raises(SplitBrainError, match="split brain"):
        pool.get_conn(timeout=5)
    assert time.monotonic() - started < 1.0  # refused at once, not after the timeout
    with pool.connection(read_only=True) as conn:
        assert port_of(conn) == replication.replicas[1].port
    rogue.admin_query("SET GLOBAL read_only=1")
    healed = seconds_until(lambda: pool.get_stats()["problem"] == "", 5)
    with pool.connection() as conn:
        assert port_of(conn) == replication.primary.port
    drill_report("split brain", detected_s=detected, writes_back_s=healed)


# -- g. every node down -------------------------------------------------------------------


def test_g_every_node_down_fails_clearly_then_recovers(
    restore: ReplicationCluster, make_cluster_pool: Callable[..., ClusterPool], drill_report: Any
) -> None:
    replication = restore
    pool = make_cluster_pool(replication.url())
    with pool.connection() as conn:
        port_of(conn)
    for server in replication.servers:
        server.kill()
    # A borrow in the instant before the monitor notices may still be lent an
    # idle connection (its first query then fails, like any query in flight).
    detected = seconds_until(lambda: pool.get_stats()["problem"] == "no node answers", 5)
    outcomes: list[tuple[bool, float, BaseException]] = []

    def borrow(read_only: bool) -> None:
        started = time.monotonic()
        try:
            conn = pool.get_conn(read_only=read_only, timeout=2)
        except Exception as exc:
            outcomes.append((read_only, time.monotonic() - started, exc))
        else:
            pool.release(conn)
            outcomes.append((read_only, time.monotonic() - started, AssertionError("lent a connection to a dead node")))

    threads = [threading.Thread(target=borrow, args=(i % 2 == 0,), daemon=True) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(t.is_alive() for t in threads), "a borrow hangs"
    assert len(outcomes) == 8
    for read_only, elapsed, exc in outcomes:
        assert isinstance(exc, (PoolTimeout, pymysql.err.OperationalError)), repr(exc)
        assert elapsed < 2 + 1.5
        if isinstance(exc, PoolTimeout):
            assert ("reader" if read_only else "writer (primary)") in str(exc)
    started = time.monotonic()
    for server in replication.servers:
        server.start()
    with pool.connection(timeout=20) as conn:
        assert port_of(conn) == replication.primary.port
    recovered = time.monotonic() - started
    drill_report(
        "g. every node down",
        detected_s=detected,
        worst_failure_s=max(e for _, e, _ in outcomes),
        errors=len(outcomes),
        recovered_after_restart_s=recovered,
    )


# -- the command line and fork ---------------------------------------------------------


def run_check(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pymysqlpool", "check", "--url", url, "--connect-timeout", "2", *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_prints_the_topology_and_warns(restore: ReplicationCluster) -> None:
    replication = restore
    done = run_check(replication.url())
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["topology", "replication"]
    roles = {line.split()[0]: line.split()[1] for line in lines[2:5]}
    assert roles == {
        f"127.0.0.1:{replication.primary.port}": "primary",
        **{f"127.0.0.1:{r.port}": "replica" for r in replication.replicas},
    }
    assert lines[-1] == "OK"
    stopped = replication.replicas[0]
    replication.stop_replication(stopped)
    done = run_check(replication.url(), "--json")
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert any(f"127.0.0.1:{stopped.port}: replication is stopped" in w for w in report["warnings"])
    assert report["nodes"][f"127.0.0.1:{stopped.port}"]["reader"] is False


@pytest.mark.threads_only("an event loop does not survive fork(): the asyncio cluster is not fork-safe")
def test_fork_child_probes_for_itself(
    restore: ReplicationCluster, make_cluster_pool: Callable[..., ClusterPool]
) -> None:
    replication = restore
    pool = make_cluster_pool(replication.url())
    with pool.connection() as conn:
        parent_port = port_of(conn)
    pid = os.fork()
    if pid == 0:  # the child: borrow, query, leave without running the parent's cleanup
        code = 1
        try:
            with pool.connection(timeout=10) as conn:
                code = 0 if port_of(conn) == parent_port else 2
            code = code or (0 if pool._monitor.is_alive() and pool.wait_probed(10) else 3)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with pool.connection() as conn:  # the parent's connections were not disturbed
        assert port_of(conn) == parent_port


def test_interrupt_during_a_causal_wait_gives_the_slot_back(
    restore: ReplicationCluster, make_cluster_pool: Callable[..., ClusterPool]
) -> None:
    replication = restore
    pool = make_cluster_pool(replication.url(), read_fallback_to_primary=False, timeout=5)
    table = make_table(pool, replication)
    # The replicas cannot apply the next write (their copy of the table is
    # locked), so a causal read must wait; replication keeps running, so the
    # monitor keeps them in rotation (stopping the SQL thread would take them
    # out at its next probe, and the read would wait for a reader instead).
    locks = [pymysql.connect(**{**replica.connect_kwargs(), "autocommit": True}) for replica in replication.replicas]
    try:
        for lock in locks:
            with lock.cursor() as cur:
                cur.execute(f"LOCK TABLES {table} WRITE")
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute(f"INSERT INTO {table} (v) VALUES (7)")
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        started = time.monotonic()
        try:
            with pytest.raises(KeyboardInterrupt):
                pool.get_conn(read_only=True, causal=True)
        finally:
            timer.cancel()
        assert time.monotonic() - started < 1.5
        stats = [node_stats(pool, replica) for replica in replication.replicas]
        # The interrupted session was given back and discarded, not leaked.
        assert sum(s["borrowed"] for s in stats) == 0, stats
        assert sum(s["leaks_detected"] for s in stats) == 0, stats
        # Closed because its answer was cut: by PyMySQL itself when the signal hit
        # inside recv() (closed_broken), else by the pool (closed_unread).
        assert sum(s["closed_broken"] + s["closed_unread"] for s in stats) == 1, stats
    finally:
        for lock in locks:
            lock.close()  # releases the table lock: the replicas apply the write
    with pool.connection(read_only=True, causal=True) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {table}")
        assert cur.fetchone()[0] == 1
