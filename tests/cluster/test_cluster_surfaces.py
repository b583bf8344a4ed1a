"""The cluster surfaces' argument rules, messages and close(): the minor
findings of the independent attack (docs/cluster.md), on both shells.

Nodes are a closed port (nothing answers), a listener that accepts and never
answers (a probe in flight until probe_timeout), or the shared test server as
a one-node cluster (its primary).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pymysqlpool import AsyncClusterPool, ClusterPool, PoolClosed, PoolTimeout
from support.server_env import mysql_kwargs

pytestmark = pytest.mark.cluster

NOWHERE = [("127.0.0.1", 9), ("127.0.0.1", 11)]  # closed ports: every probe fails at once
SLACK = 1.5  # seconds a loaded machine may add to a bound


@pytest.fixture(params=[ClusterPool, AsyncClusterPool], ids=["thread", "asyncio"])
def shell_cls(request: Any) -> Any:
    return request.param


def in_loop(shell_cls: Any, hosts: Any, body: Any, **kw: Any) -> Any:
    """Run ``body(cluster)`` on a cluster of ``shell_cls`` (in a loop of its
    own for the asyncio shell; opened, and closed after)."""
    kw = {"pre_create_num": 0, "connect_timeout": 1, **kw}
    if shell_cls is ClusterPool:
        cluster = ClusterPool(hosts=hosts, **kw)
        try:
            return body(cluster)
        finally:
            cluster.close()

    async def run() -> Any:
        cluster = AsyncClusterPool(hosts=hosts, **kw)
        await cluster.open()
        try:
            result = body(cluster)
            return await result if asyncio.iscoroutine(result) else result
        finally:
            await cluster.close()

    return asyncio.run(asyncio.wait_for(run(), 30))


def test_reprobe_takes_only_a_node_index(shell_cls: Any) -> None:
    def body(cluster: Any) -> list[str]:
        messages = []
        for wrong in (2, 99, -1, True, "0"):
            with pytest.raises(ValueError) as raised:
                cluster.reprobe(wrong)
            messages.append(str(raised.value))
        cluster.reprobe(1)  # the last node: accepted
        return messages

    messages = in_loop(shell_cls, NOWHERE, body)
    assert all("from 0 to 1" in m for m in messages), messages


def test_a_borrow_takes_the_constructors_flags(shell_cls: Any) -> None:
    """read_only and causal are True or False at the borrow as at the constructor."""
    with pytest.raises(TypeError, match="causal must be True or False, got 1"):
        shell_cls(hosts=NOWHERE, causal=1, pre_create_num=0)

    def body(cluster: Any) -> Any:
        async def borrows() -> list[str]:
            messages = []
            for args in ({"read_only": "yes"}, {"read_only": 0}, {"read_only": True, "causal": 1}):
                with pytest.raises(TypeError) as raised:
                    if shell_cls is ClusterPool:
                        cluster.get_conn(timeout=0.1, **args)
                    else:
                        await cluster.get_conn(timeout=0.1, **args)
                messages.append(str(raised.value))
            return messages

        return borrows() if shell_cls is AsyncClusterPool else asyncio.run(borrows())

    assert in_loop(shell_cls, NOWHERE, body) == [
        "read_only must be True or False, got 'yes'",
        "read_only must be True or False, got 0",
        "causal must be True or False, got 1",
    ]


@pytest.mark.parametrize("interval", [-1, 0, 1.5, float("nan")])
def test_probe_interval_message_states_the_rule(shell_cls: Any, interval: float) -> None:
    with pytest.raises(ValueError) as raised:
        shell_cls(hosts=NOWHERE, probe_interval=interval, pre_create_num=0)
    assert "probe_interval must be > 0 and <= 1 second" in str(raised.value)


def test_wait_ready_on_a_closed_cluster_raises_pool_closed(shell_cls: Any) -> None:
    if shell_cls is ClusterPool:
        cluster = ClusterPool(hosts=NOWHERE, pre_create_num=0)
        cluster.close()
        with pytest.raises(PoolClosed):
            cluster.wait_ready(0.2)
        return

    async def run() -> None:
        cluster = AsyncClusterPool(hosts=NOWHERE, pre_create_num=0)
        await cluster.open()
        await cluster.close()
        with pytest.raises(PoolClosed):
            await cluster.wait_ready(0.2)

    asyncio.run(asyncio.wait_for(run(), 30))


@pytest.fixture
def silent_listener() -> Iterator[tuple[str, int]]:
    """A listener on 127.0.0.1 that accepts and never answers: a probe's
    connect hangs in the handshake until probe_timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield ("127.0.0.1", server.getsockname()[1])
    server.close()


def test_close_ends_the_probe_workers(silent_listener: tuple[str, int]) -> None:
    """ClusterPool.close() returns after its probe threads ended (a probe in
    flight ends within probe_timeout), not while one still runs."""
    probe_timeout = 1.0
    cluster = ClusterPool(hosts=[silent_listener], pre_create_num=0, probe_timeout=probe_timeout)
    deadline = time.monotonic() + 5
    for _ in range(100):  # until a probe worker runs, bounded
        if any(t.name.startswith(f"pymysqlpool-probe-{cluster.name}") for t in threading.enumerate()):
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    cluster.close()
    took = time.monotonic() - started
    left = [t.name for t in threading.enumerate() if t.name.startswith(f"pymysqlpool-probe-{cluster.name}")]
    assert left == []
    assert took < probe_timeout * 3 + 5 + SLACK  # close()'s own bound


def test_write_timeout_on_a_full_primary_says_it_was_full(shell_cls: Any) -> None:
    """The primary has every connection lent: the PoolTimeout says so, not
    that a node failed."""
    kw = mysql_kwargs()
    hosts = [(kw.pop("host"), kw.pop("port"))]
    kw.pop("init_command")

    if shell_cls is ClusterPool:
        cluster = ClusterPool(hosts=hosts, maxsize=1, pre_create_num=0, **kw)
        try:
            assert cluster.wait_ready(10)
            with cluster.connection(), pytest.raises(PoolTimeout) as raised:
                cluster.get_conn(timeout=0.3)
        finally:
            cluster.close()
    else:

        async def run() -> Any:
            async with AsyncClusterPool(hosts=hosts, maxsize=1, pre_create_num=0, **kw) as cluster:
                assert await cluster.wait_ready(10)
                async with cluster.connection():
                    with pytest.raises(PoolTimeout) as raised:
                        await cluster.get_conn(timeout=0.3)
                return raised

        raised = asyncio.run(asyncio.wait_for(run(), 30))
    message = str(raised.value)
    assert "every connection lent" in message, message
    assert "failed" not in message, message
