"""Drill f on a real 3-node Galera cluster (galera-4, rsync state transfer)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pymysql
import pytest
from _load import Load, code_of, seconds_until, timed

from pymysqlpool import ClusterPool, PoolTimeout
from support.mariadb_cluster import APP_PASSWORD, APP_USER, GaleraCluster
from support.throwaway_mariadb import ThrowawayMariaDB
from support.waiting import wait_until

pytestmark = pytest.mark.cluster

# A query in flight on a killed node, or a transaction caught in the view change.
IN_FLIGHT = {2013, 2006, "InterfaceError", 1047, 1213, 1180}


def node(pool: ClusterPool, server: ThrowawayMariaDB) -> dict[str, Any]:
    stats: dict[str, Any] = pool.get_stats()["nodes"][f"127.0.0.1:{server.port}"]
    return stats


def make_table(pool: ClusterPool) -> str:
    table = f"drill_{uuid.uuid4().hex[:8]}"
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
    return table


def test_f_galera_node_killed_then_quorum_lost_then_rejoined(
    galera: GaleraCluster, make_cluster_pool: Callable[..., ClusterPool], drill_report: Any
) -> None:
    pool = make_cluster_pool(galera.url())
    assert pool.topology == "galera"
    table = make_table(pool)
    writer = next(s for s in galera.servers if node(pool, s)["writer"])

    # 1. The writer node is SIGKILLed under load: borrowers move to the survivors.
    load = Load(pool, table, writers=8, readers=8, borrow_timeout=20).start()
    try:
        load.wait_for_successes("writer", 30)
        killed_at = time.monotonic()
        writer.kill()
        rerouted = seconds_until(lambda: not node(pool, writer)["reader"] and not node(pool, writer)["writer"], 5)
        load.wait_for_successes("writer", 30, timeout=30)
        load.wait_for_successes("reader", 30)
    finally:
        load.stop()
    resumed = load.first_success_after("writer", killed_at)
    assert resumed is not None, "writes never resumed after the node was killed"
    errors = load.errors("writer") + load.errors("reader")
    assert all(code_of(o.error) in IN_FLIGHT for o in errors), [o.error for o in errors]
    assert not any(isinstance(o.error, PoolTimeout) for o in errors)
    assert len(errors) <= 2 * (load.writers + load.readers)
    assert writer.port not in {o.port for o in load.begun_after("writer", killed_at + rerouted)}
    assert writer.port not in {o.port for o in load.begun_after("reader", killed_at + rerouted)}

    galera.start_node(writer)
    galera.wait_synced()
    rejoin_kill = seconds_until(lambda: node(pool, writer)["reader"], 10)

    # 2. Quorum loss: two nodes hang, the third answers ping and SELECT 1 but
    # fails table access with 1047, so it must leave the rotation.
    isolated, *hung = galera.servers
    for server in hung:
        server.pause()
    paused_at = time.monotonic()
    try:
        out = seconds_until(lambda: not node(pool, isolated)["reader"] and not node(pool, isolated)["writer"], 30)
        raw = pymysql.connect(
            host="127.0.0.1", port=isolated.port, user=APP_USER, password=APP_PASSWORD, connect_timeout=2
        )
        try:
            raw.ping(reconnect=False)
            with raw.cursor() as cur:
                cur.execute("SELECT 1")
                with pytest.raises(pymysql.err.OperationalError) as refused:
                    cur.execute(f"SELECT COUNT(*) FROM test.{table}")
            assert refused.value.args[0] == 1047
        finally:
            raw.close()
        started = time.monotonic()
        with pytest.raises(PoolTimeout, match="no synced Galera node"):
            pool.get_conn(timeout=1)
        assert time.monotonic() - started < 1 + 1.5
    finally:
        for server in hung:
            server.resume()
    resumed_at = time.monotonic()
    back = seconds_until(lambda: node(pool, isolated)["reader"], 30)
    with pool.connection(timeout=10) as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO {table} (v) VALUES (5)")
    galera.wait_synced()
    assert wait_until(lambda: all(node(pool, s)["reader"] for s in galera.servers), 10)
    drill_report(
        "f. Galera",
        kill_rerouted_s=rerouted,
        first_write_after_kill_s=resumed - killed_at,
        client_errors_on_kill=len(errors),
        killed_node_back_s=rejoin_kill,
        quorum_loss_out_s=out,
        quorum_back_s=back,
        paused_s=resumed_at - paused_at,
    )


def test_f_galera_causal_reads(galera: GaleraCluster, make_cluster_pool: Callable[..., ClusterPool]) -> None:
    galera.wait_synced()
    pool = make_cluster_pool(galera.url(), causal=True)
    assert wait_until(lambda: len(pool._readers) == 3, 10)
    table = make_table(pool)
    stale = 0
    seen_ports = set()
    for _ in range(300):
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute(f"INSERT INTO {table} (v) VALUES (6)")
            row_id = cur.lastrowid
        with pool.connection(read_only=True) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM {table} WHERE id = %s", (row_id,))
            stale += cur.fetchone()[0] != 1
            cur.execute("SELECT @@port, @@SESSION.wsrep_sync_wait")
            port, sync_wait = cur.fetchone()
            seen_ports.add(port)
            assert sync_wait == 1
        # The setting does not outlive the causal borrow.
        with pool.connection(read_only=True, causal=False) as conn, conn.cursor() as cur:
            cur.execute("SELECT @@SESSION.wsrep_sync_wait")
            assert cur.fetchone()[0] == 0
    assert stale == 0
    assert len(seen_ports) > 1


def test_f_galera_frozen_nodes_bound_causal_borrows_and_returns(
    galera: GaleraCluster, make_cluster_pool: Callable[..., ClusterPool], drill_report: Any
) -> None:
    """wsrep_sync_wait set on borrow and reset on return have client-side deadlines (issue 19)."""
    galera.wait_synced()
    # probe_timeout 5: frozen nodes stay in rotation; validation_interval 60: idle ones lent unpinged.
    pool = make_cluster_pool(
        galera.url(), causal=True, connect_timeout=1, probe_timeout=5, validation_interval=60, pre_create_num=1
    )
    assert wait_until(lambda: len(pool._readers) == 3, 10)
    conn = pool.get_conn(read_only=True)
    with conn.cursor() as cur:
        cur.execute("SELECT @@port")
        port = cur.fetchone()[0]
    frozen = next(s for s in galera.servers if s.port == port)
    frozen.pause()
    try:
        # SET SESSION wsrep_sync_wait=0 on a frozen node
        release_s, outcome = timed(lambda: pool.release(conn), 10)
        assert outcome is None, outcome
    finally:
        frozen.resume()
    assert release_s < 1 + 1.5, release_s  # connect_timeout + slack

    def borrow() -> None:
        try:
            borrowed = pool.get_conn(read_only=True, timeout=1)
        except (PoolTimeout, pymysql.err.OperationalError):
            return
        pool.release(borrowed, True)

    for server in galera.servers:
        server.pause()
    try:
        borrow_s, outcome = timed(borrow, 15)
        assert outcome is None, outcome
    finally:
        for server in galera.servers:
            server.resume()
    assert borrow_s < 1 + 1 + 0.25 + 1.5, borrow_s  # timeout + connect_timeout + causal slack + slack
    galera.wait_synced()
    drill_report("galera frozen nodes, causal", release_s=release_s, borrow_s=borrow_s)
