"""AsyncClusterPool alone: cancellation during a causal wait, a probe and a
wait for a writer, and the event loop it belongs to. The drills shared with
ClusterPool run against both shells in the other modules of this tier."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from pymysqlpool import AsyncClusterPool, WrongEventLoop
from support.mariadb_cluster import ReplicationCluster
from support.waiting import wait_until

pytestmark = pytest.mark.cluster

SLACK = 1.5  # seconds a loaded 2-core machine may add to a contract bound
KW: dict[str, Any] = {"maxsize": 4, "probe_interval": 0.2, "connect_timeout": 2, "timeout": 10}


def lent(cluster: AsyncClusterPool) -> int:
    """Connections lent out (or reserved) over every node: 0 when the books are exact."""
    return sum(p._open - len(p._idle) for p in cluster.node_pools())


async def _until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())


async def _table(cluster: AsyncClusterPool, replication: ReplicationCluster) -> str:
    table = f"acl_{uuid.uuid4().hex[:8]}"
    async with cluster.connection() as conn, conn.cursor() as cur:
        await cur.execute(f"CREATE TABLE {table} (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
    replication.wait_caught_up()
    return table


def test_cancel_during_a_causal_wait_leaves_exact_books(restore: ReplicationCluster) -> None:
    replication = restore

    async def scenario() -> tuple[int, int]:
        # probe_timeout 30: the frozen replicas stay in rotation; validation_interval 60:
        # their idle connections are lent without a ping, so the borrow reaches MASTER_GTID_WAIT.
        kwargs = {**KW, "probe_timeout": 30, "validation_interval": 60, "pre_create_num": 2}
        async with AsyncClusterPool(replication.url(), **kwargs) as cluster:
            assert await cluster.wait_ready(20, read_only=True)
            assert await _until(lambda: len(cluster._readers) == 2, 20)
            table = await _table(cluster, replication)
            for replica in replication.replicas:
                replica.pause()
            try:
                async with cluster.connection() as conn, conn.cursor() as cur:
                    await cur.execute(f"INSERT INTO {table} (v) VALUES (1)")
                waits = cluster.get_stats()["causal_waits"]
                task = asyncio.ensure_future(cluster.get_conn(read_only=True, causal=True, timeout=5))
                assert await _until(lambda: cluster.get_stats()["causal_waits"] > waits, 5)
                await asyncio.sleep(0.2)  # MASTER_GTID_WAIT sent to a frozen replica
                assert not task.done()
                task.cancel()
                started = time.monotonic()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert time.monotonic() - started < 1.0
                during = lent(cluster)
            finally:
                for replica in replication.replicas:
                    replica.resume()
            # The abandoned MASTER_GTID_WAIT is killed on the server (the node pool's
            # kill_on_abandon): its slot stays counted until the session is gone.
            assert await _until(lambda: lent(cluster) == 0, 2 + 2 + SLACK)
            stats = cluster.get_stats()
            # The cluster goes on serving causal reads.
            conn = await cluster.get_conn(read_only=True, causal=True, timeout=5)
            await cluster.release(conn)
            return during, stats["kills"] + stats["kill_failures"]

    during, kills = asyncio.run(scenario())
    assert during <= 1  # the cancelled borrow's session, counted while its kill runs; nothing leaked
    assert kills == 1


def test_close_cancels_a_probe_stuck_on_a_frozen_node(restore: ReplicationCluster) -> None:
    replication = restore
    frozen = replication.replicas[0]

    async def scenario() -> tuple[float, list[asyncio.Task[Any]], list[Any]]:
        cluster = AsyncClusterPool(replication.url(), **{**KW, "probe_timeout": 30})
        await cluster.open()
        assert await cluster.wait_ready(20, read_only=True)
        frozen.pause()
        try:
            # A probe of the frozen node is in flight (it may wait up to probe_timeout = 30 s).
            node = next(n for n in cluster._nodes if n.port == frozen.port)
            assert await _until(lambda: node.busy, 5)
            await asyncio.sleep(0.3)
            assert node.busy
            started = time.monotonic()
            await cluster.close()
            elapsed = time.monotonic() - started
        finally:
            frozen.resume()
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return elapsed, left, [n.probe_raw for n in cluster._nodes]

    elapsed, left, probe_connections = asyncio.run(scenario())
    assert elapsed < 5, elapsed  # the stuck probe was cancelled, not awaited for 30 s
    assert left == []  # no monitor, probe or maintenance task survives close()
    assert probe_connections == [None, None, None]


def test_cancel_a_borrow_waiting_for_a_writer(restore: ReplicationCluster) -> None:
    replication = restore
    primary = replication.primary

    async def scenario() -> tuple[int, int, float]:
        async with AsyncClusterPool(replication.url(), **KW) as cluster:
            assert await cluster.wait_ready(20)
            primary.admin_query("SET GLOBAL read_only=1")  # no primary: write borrows wait for one
            try:
                assert await _until(lambda: not cluster._writers, 10)
                task = asyncio.ensure_future(cluster.get_conn(timeout=10))
                await asyncio.sleep(0.5)
                assert not task.done()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                during = lent(cluster)
            finally:
                primary.admin_query("SET GLOBAL read_only=0")
            # The writer is followed again: wait_ready wakes on the new routing, not at its timeout.
            started = time.monotonic()
            assert await cluster.wait_ready(10)
            async with cluster.connection(timeout=10) as conn, conn.cursor() as cur:
                await cur.execute("SELECT @@port")
                port = (await cur.fetchone())[0]
            assert port == primary.port
            return during, lent(cluster), time.monotonic() - started

    during, after, follow = asyncio.run(scenario())
    assert (during, after) == (0, 0)
    assert follow < 2 + SLACK  # a probe interval and a borrow, not the 10 s timeout


def test_a_second_event_loop_is_refused(restore: ReplicationCluster) -> None:
    cluster = AsyncClusterPool(restore.url(), **KW)

    async def first() -> None:
        await cluster.open()
        assert await cluster.wait_ready(20)
        conn = await cluster.get_conn()
        await cluster.release(conn)

    async def second() -> None:
        with pytest.raises(WrongEventLoop):
            await cluster.get_conn()
        with pytest.raises(WrongEventLoop):
            await cluster.wait_ready(1)

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(first())
        asyncio.run(second())
        loop.run_until_complete(cluster.close())
    finally:
        loop.close()
    assert wait_until(lambda: cluster.closed, 1)
