"""Issue 19 on real GTID replication: frozen nodes, split brain after a
failover, causal reads under lag, writes seen through next_result(), busy
replicas, the same server twice, a node down at start, wrong accounts.

Bounds are the contract (timeout + connect_timeout, with slack for a loaded
machine), never a speed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest
from _load import make_table, port_of, timed

from pymysqlpool import ClusterPool, PoolTimeout, SplitBrainError
from support.mariadb_cluster import ReplicationCluster
from support.tcp_proxy import TCPProxy
from support.throwaway_mariadb import ThrowawayMariaDB
from support.waiting import wait_until

pytestmark = pytest.mark.cluster

SLACK = 1.5  # seconds a loaded 2-core machine may add to a contract bound


def role(pool: ClusterPool, server: ThrowawayMariaDB) -> str:
    return str(pool.get_stats()["nodes"][f"127.0.0.1:{server.port}"]["role"])


# -- 2./3. every return and borrow ends within timeout + connect_timeout -------------


def test_release_after_a_write_with_the_primary_frozen(
    restore: ReplicationCluster, make_cluster_pool: Callable[..., ClusterPool], drill_report: Any
) -> None:
    replication = restore
    pool = make_cluster_pool(replication.url(), read_timeout=30, connect_timeout=2, probe_timeout=5)
    table = make_table(pool, replication)
    figures = {}
    for tracked in (True, False):
        conn = pool.get_conn()
        if not tracked:
            conn._raw.gtid_hook = None  # as a connection that cannot report its position: the return reads it
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {table} (v) VALUES (1)")
        replication.primary.pause()
        try:
            elapsed, outcome = timed(lambda c=conn: pool.release(c), 2 + SLACK + 8)
        finally:
            replication.primary.resume()
        assert outcome is None, outcome
        assert elapsed < 2 + SLACK, elapsed  # connect_timeout + slack, not read_timeout (30)
        figures[f"release_{'tracked' if tracked else 'untracked'}_s"] = elapsed
    drill_report("release after a write, primary frozen", **figures)


def test_causal_read_with_both_replicas_frozen_falls_back_within_its_timeout(
    restore: ReplicationCluster, make_cluster_pool: Callable[..., ClusterPool], drill_report: Any
) -> None:
    replication = restore
    # probe_timeout 5: the frozen replicas stay in rotation for the whole borrow;
    # validation_interval 60: their idle connections are lent without a ping.
    pool = make_cluster_pool(
        replication.url(), connect_timeout=2, probe_timeout=5, validation_interval=60, pre_create_num=2, causal=True
    )
    table = make_table(pool, replication)
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO {table} (v) VALUES (1)")
    for replica in replication.replicas:
        replica.pause()
    try:
        elapsed, outcome = timed(lambda: pool.get_conn(read_only=True, timeout=2), 2 + 2 + SLACK + 10)
    finally:
        for replica in replication.replicas:
            replica.resume()
    assert not isinstance(outcome, BaseException), outcome
    try:
        assert port_of(outcome) == replication.primary.port
    finally:
        pool.release(outcome)
    assert elapsed < 2 + 2 + SLACK, elapsed
    assert pool.get_stats()["causal_fallbacks"] == 1
    drill_report("causal read, both replicas frozen", borrow_s=elapsed)


def test_one_node_cluster_frozen_primary_borrow_waits_once(
    restore: ReplicationCluster, cluster_cls: Any, drill_report: Any
) -> None:
    replication = restore
    primary = replication.primary
    pool = cluster_cls(
        hosts=[("127.0.0.1", primary.port)],
        user="app",
        password="secret",
        database="test",
        pre_create_num=2,
        timeout=4,
        connect_timeout=2,
        probe_timeout=5,
        probe_interval=0.2,
        validation_interval=0,
    )
    try:
        assert pool.wait_ready(10)
        primary.pause()
        try:
            elapsed, outcome = timed(pool.get_conn, 4 + 2 + SLACK + 10)
        finally:
            primary.resume()
        assert isinstance(outcome, (PoolTimeout, pymysql.err.OperationalError)), outcome
        assert elapsed < 4 + 2 + SLACK, elapsed  # not a second full wait after the quick path
    finally:
        pool.close()
    drill_report("one-node cluster, frozen primary", borrow_s=elapsed)


# -- 4./5./6. causal reads with replicas 3 s behind --------------------------------


@pytest.fixture
def delayed(restore: ReplicationCluster) -> Iterator[ReplicationCluster]:
    """Both replicas apply each transaction 3 s after the primary (within max_lag=10)."""
    for replica in restore.replicas:
        replica.admin_query("STOP SLAVE")
        replica.admin_query("CHANGE MASTER TO MASTER_DELAY=3")
        replica.admin_query("START SLAVE")
    try:
        yield restore
    finally:
        for replica in restore.replicas:
            replica.admin_query("STOP SLAVE")
            replica.admin_query("CHANGE MASTER TO MASTER_DELAY=0")
            replica.admin_query("START SLAVE")


def rows(conn: Any, table: str) -> int:
    with conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {table}")
        return int(cur.fetchone()[0])


@pytest.fixture
def lagging(
    delayed: ReplicationCluster, make_cluster_pool: Callable[..., ClusterPool]
) -> tuple[ReplicationCluster, ClusterPool, str]:
    """A pool (multi-statements on) and a table, replicas in read rotation though 3 s behind."""
    replication = delayed
    pool = make_cluster_pool(replication.url(), max_lag=10, client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
    table = f"adv_{uuid.uuid4().hex[:8]}"
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        cur.execute(f"CREATE PROCEDURE {table}_p() BEGIN SELECT 1; INSERT INTO {table} (v) VALUES (6); END")
    assert wait_until(lambda: all(role(pool, r) == "replica" for r in replication.replicas), 20)
    assert wait_until(lambda: set(pool._readers).isdisjoint(pool._writers), 20)
    return replication, pool, table


def test_causal_read_falls_back_to_the_primary_and_counts_it(
    lagging: tuple[ReplicationCluster, ClusterPool, str], drill_report: Any
) -> None:
    replication, pool, table = lagging
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO {table} (v) VALUES (4)")
    started = time.monotonic()
    with pool.connection(read_only=True, causal=True, timeout=3) as conn:
        assert rows(conn, table) == 1
        assert port_of(conn) == replication.primary.port
    fallback_s = time.monotonic() - started
    assert pool.get_stats()["causal_fallbacks"] == 1
    assert pool.get_stats()["causal_waits"] == 1
    drill_report("causal read, replicas 3 s behind", fallback_s=fallback_s)


def test_causal_read_inside_an_open_write_borrow_after_commit(
    lagging: tuple[ReplicationCluster, ClusterPool, str],
) -> None:
    replication, pool, table = lagging
    replication.wait_caught_up()  # a stale read now needs the position of this very write
    writer = pool.get_conn()
    try:
        writer.autocommit(False)
        with writer.cursor() as cur:
            cur.execute(f"INSERT INTO {table} (v) VALUES (5)")
        writer.commit()
        with pool.connection(read_only=True, causal=True, timeout=3) as conn:
            assert rows(conn, table) == 1
    finally:
        pool.release(writer)


def test_a_write_the_connection_could_not_report_is_read_on_return(
    lagging: tuple[ReplicationCluster, ClusterPool, str],
) -> None:
    replication, pool, table = lagging
    replication.wait_caught_up()
    conn = pool.get_conn()
    conn._raw.gtid_hook = None  # as a connection that cannot hand over its position
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {table} (v) VALUES (8)")
    pool.release(conn)  # reads @@gtid_binlog_pos
    with pool.connection(read_only=True, causal=True, timeout=3) as conn:
        assert rows(conn, table) == 1


def test_writes_are_still_tracked_after_a_session_reset(
    delayed: ReplicationCluster, make_cluster_pool: Callable[..., ClusterPool]
) -> None:
    replication = delayed
    pool = make_cluster_pool(replication.url(), max_lag=10, reset_session=True, maxsize=2)
    table = make_table(pool, replication)  # its return resets the session (COM_RESET_CONNECTION)
    assert wait_until(lambda: set(pool._readers).isdisjoint(pool._writers), 20)
    writer = pool.get_conn()  # the same connection, reset
    try:
        with writer.cursor() as cur:
            cur.execute(f"INSERT INTO {table} (v) VALUES (9)")
        with pool.connection(read_only=True, causal=True, timeout=3) as conn:
            assert rows(conn, table) == 1
    finally:
        pool.release(writer)


@pytest.mark.parametrize("statement", ["CALL {table}_p()", "SELECT 1; INSERT INTO {table} (v) VALUES (7)"])
def test_writes_seen_through_next_result_are_tracked(
    lagging: tuple[ReplicationCluster, ClusterPool, str], statement: str
) -> None:
    replication, pool, table = lagging
    replication.wait_caught_up()  # a stale read now needs the position of this very write
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(statement.format(table=table))
        while cur.nextset():
            pass
    with pool.connection(read_only=True, causal=True, timeout=3) as conn:
        assert rows(conn, table) == 1, statement


# -- 7. round_robin skips a busy replica ---------------------------------------------


def test_round_robin_skips_a_full_replica(
    restore: ReplicationCluster, make_cluster_pool: Callable[..., ClusterPool]
) -> None:
    replication = restore
    pool = make_cluster_pool(replication.url(), maxsize=2, balance="round_robin")
    assert wait_until(lambda: all(role(pool, r) == "replica" for r in replication.replicas), 20)
    busy = replication.replicas[0].port
    held: list[Any] = []
    others: list[Any] = []
    while len(held) < 2:
        conn = pool.get_conn(read_only=True, timeout=5)
        (held if port_of(conn) == busy else others).append(conn)
        if len(others) == 2:
            pool.release(others.pop())
    for conn in others:
        pool.release(conn)
    try:
        failures = 0
        for _ in range(20):
            try:
                conn = pool.get_conn(read_only=True, timeout=1)
            except PoolTimeout:
                failures += 1
            else:
                pool.release(conn)
        assert failures == 0
    finally:
        for conn in held:
            pool.release(conn)


# -- 8. the same server listed twice -------------------------------------------------


def test_the_same_server_under_two_addresses(restore: ReplicationCluster, cluster_cls: Any) -> None:
    port = restore.primary.port
    with cluster_cls(
        hosts=[("127.0.0.1", port), ("127.1", port)],
        user="app",
        password="secret",
        database="test",
        probe_interval=0.2,
        connect_timeout=2,
    ) as pool:
        assert pool.wait_probed(10)
        assert wait_until(lambda: pool.get_stats()["nodes"][f"127.1:{port}"]["role"] == "duplicate", 5)
        with pool.connection(timeout=5) as conn:  # no SplitBrainError
            assert port_of(conn) == port
        assert "the same server as 127.0.0.1" in pool.get_stats()["nodes"][f"127.1:{port}"]["last_error"]


# -- 9. a node down at start ---------------------------------------------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_start_degraded_when_a_node_is_down(restore: ReplicationCluster, cluster_cls: Any) -> None:
    port = restore.primary.port
    common: dict[str, Any] = {
        "user": "app",
        "password": "secret",
        "database": "test",
        "pre_create_num": 1,
        "connect_timeout": 2,
        "probe_interval": 0.2,
    }
    with TCPProxy(target_port=restore.replicas[0].port) as proxy:
        proxy.refuse()
        hosts = [("127.0.0.1", port), proxy.address]
        with pytest.raises(pymysql.err.OperationalError) as caught:
            cluster_cls(hosts=hosts, require_all_nodes=True, **common)
        assert caught.value.args[0] == 2003
        with cluster_cls(hosts=hosts, **common) as pool:
            primary_pool, replica_pool = pool.node_pools()
            assert primary_pool.total_num == 1  # the answering node is warmed in the constructor
            with pool.connection(timeout=10) as conn:
                assert port_of(conn) == port
            proxy.heal()  # the node answers: probed into the routing, its pool warmed in the background
            assert wait_until(lambda: pool.get_stats()["nodes"][f"127.0.0.1:{proxy.port}"]["role"] == "replica", 10)
            assert wait_until(lambda: replica_pool.total_num >= 1, 10)
    with pytest.raises(pymysql.err.OperationalError) as caught:
        cluster_cls(hosts=restore.hosts(), **{**common, "password": "wrong"})
    assert caught.value.args[0] == 1045  # wrong credentials raise in the constructor


# -- new user: errors that retrying cannot fix are raised at once --------------------


@pytest.mark.parametrize(
    ("change", "code", "needle"),
    [
        ({"password": "wrong"}, {1045}, "Access denied"),
        ({"database": "no_such_db"}, {1044, 1049}, "no_such_db"),  # 1044 for an account without rights there
        ({"user": "nomonitor", "password": "pw"}, {1227}, "GRANT SLAVE MONITOR"),
    ],
)
def test_config_errors_raise_at_once_naming_the_node(
    restore: ReplicationCluster, cluster_cls: Any, change: dict[str, Any], code: set[int], needle: str
) -> None:
    primary = restore.primary
    primary.admin_query("CREATE USER IF NOT EXISTS 'nomonitor'@'%' IDENTIFIED BY 'pw'")
    primary.admin_query("GRANT ALL ON test.* TO 'nomonitor'@'%'")
    restore.wait_caught_up()
    kwargs: dict[str, Any] = {"user": "app", "password": "secret", "database": "test", **change}
    with cluster_cls(hosts=restore.hosts(), probe_interval=0.2, connect_timeout=2, timeout=30, **kwargs) as pool:
        for read_only in (False, True):
            started = time.monotonic()
            with pytest.raises(pymysql.err.OperationalError) as caught:
                pool.get_conn(read_only=read_only)
            assert time.monotonic() - started < 10  # not the 30 s timeout
            assert caught.value.args[0] in code
            assert needle in str(caught.value) and "127.0.0.1:" in str(caught.value)
            assert "secret" not in str(caught.value)


# -- 1. split brain after a failover is not forgotten --------------------------------


def test_split_brain_drill_a_missed_probe_is_no_evidence(
    make_cluster_pool: Callable[..., ClusterPool], drill_report: Any
) -> None:
    with ReplicationCluster(replicas=1) as replication:
        old, new = replication.primary, replication.replicas[0]
        pool = make_cluster_pool(replication.url(), probe_timeout=0.5, connect_timeout=1, timeout=5)
        table = make_table(pool, replication)
        replication.primary.kill()
        replication.promote(new)
        assert wait_until(lambda: role(pool, new) == "primary", 10)
        with pool.connection(timeout=10) as conn, conn.cursor() as cur:
            for v in range(5):
                cur.execute(f"INSERT INTO {table} (v) VALUES ({v})")  # history the old primary lacks
        old.extra_args.remove("--read-only=ON")
        old.start()  # comes back writable (read_only=0): split brain
        assert wait_until(lambda: "split brain" in pool.get_stats()["problem"], 10)
        before = int(old.admin_query(f"SELECT COUNT(*) FROM {table}")[0][0])
        old_gtid = str(old.admin_query("SELECT @@gtid_binlog_pos")[0][0])
        new_gtid = str(new.admin_query("SELECT @@gtid_binlog_pos")[0][0])
        new.pause()  # the new primary misses its probes
        try:
            # A node's role is its latest probe; the routing that borrowers see is published by
            # the monitor after it: wait for the routing that has the old primary alone (the
            # problem with the evidence), not only for the probe, or a refusal may still quote
            # the previous routing ("nodes ... all have read_only=0").
            evidence = f"{old_gtid} does not include 127.0.0.1:{new.port}'s {new_gtid}"
            assert wait_until(lambda: role(pool, new) == "down" and evidence in pool.get_stats()["problem"], 10)
            refused = acknowledged = 0
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                try:
                    with pool.connection(timeout=0.5) as conn, conn.cursor() as cur:
                        cur.execute(f"INSERT INTO {table} (v) VALUES (-1)")
                        acknowledged += 1
                except SplitBrainError as exc:
                    refused += 1
                    # The evidence: the old primary's position does not include the new one's last known.
                    assert evidence in str(exc)
                    time.sleep(0.01)
            assert acknowledged == 0 and refused > 0
            assert int(old.admin_query(f"SELECT COUNT(*) FROM {table}")[0][0]) == before
        finally:
            new.resume()
        # Demoted and re-attached to the new primary: writes go to the new primary, and the
        # old one is trusted again once it replicates.
        old.admin_query("SET GLOBAL read_only=1")
        old.admin_query(
            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={new.port}, MASTER_USER='root',"
            " MASTER_PASSWORD='', MASTER_USE_GTID=current_pos, MASTER_CONNECT_RETRY=1"
        )
        old.admin_query("START SLAVE")
        assert wait_until(lambda: pool.get_stats()["problem"] == "", 10), pool.get_stats()["problem"]
        with pool.connection(timeout=5) as conn:
            assert port_of(conn) == new.port
        drill_report("split brain forgotten (issue 19)", refused=refused, acknowledged_on_stale=acknowledged)


# -- 14. probes of down nodes: no TLS context each, a bounded round --------------------


def test_many_down_nodes_cost_a_bounded_probe_round(monkeypatch: pytest.MonkeyPatch, drill_report: Any) -> None:
    built: list[int] = []
    real = pymysql.connections.Connection._create_ssl_ctx

    def counting(self: Any, sslp: Any) -> Any:
        built.append(1)
        return real(self, sslp)

    monkeypatch.setattr(pymysql.connections.Connection, "_create_ssl_ctx", counting)
    ports: set[int] = set()
    while len(ports) < 300:
        ports.add(_closed_port())
    started = time.monotonic()
    pool = ClusterPool(
        hosts=[("127.0.0.1", p) for p in sorted(ports)], user="u", password="p", probe_timeout=1, connect_timeout=1
    )
    try:
        assert pool.wait_probed(60)
        first_round = time.monotonic() - started
        cpu = time.process_time()
        wall = time.monotonic()
        assert wait_until(lambda: all(n.failures >= 3 for n in pool._nodes), 30)
        cpu_share = (time.process_time() - cpu) / (time.monotonic() - wall)
        probes = sum(n.failures for n in pool._nodes)
    finally:
        pool.close()
    assert built == []  # the node pools' shared contexts: none built for a server that never answered
    # Every probe of a round runs at once, each bounded by probe_timeout (1 s).
    assert first_round < 1 + SLACK * 3, first_round
    drill_report(
        "300 down nodes", first_round_s=first_round, probes=probes, cpu_share_while_probing=round(cpu_share, 3)
    )
