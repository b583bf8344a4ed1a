"""The cluster's own statements as plans (``_clusterbase``), run by each
shell's ``_run``: what an answer, an error and an interrupt (KeyboardInterrupt
in a thread, cancellation in a task) do to the steering and the connection.
The driver's ``fetch_one`` is replaced, so no server is involved; the shells
are built with ``pre_create_num=0`` on a port nothing listens on."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import pymysql
import pytest

import pymysqlpool.cluster as thread_cluster
from pymysqlpool import ClusterPool


class Raw:
    """A connection as the plans see it: a tracking connection that wrote."""

    wrote = True
    sync_wait_on = False


def _answers(result: Any) -> Callable[..., Any]:
    def fetch_one(raw: Any, sql: str, args: Any = None, timeout: Any = None) -> Any:
        if isinstance(result, BaseException):
            raise result
        return result

    return fetch_one


@pytest.fixture
def cluster() -> Any:
    pool = ClusterPool(hosts=[("127.0.0.1", 9)], pre_create_num=0, connect_timeout=0.5, probe_timeout=0.2)
    try:
        yield pool
    finally:
        pool.close()


def _run_return(cluster: Any, monkeypatch: pytest.MonkeyPatch, result: Any) -> tuple[Raw, list[Any]]:
    dropped: list[Any] = []
    monkeypatch.setattr(thread_cluster._driver, "fetch_one", _answers(result))
    monkeypatch.setattr(ClusterPool, "_force_close", staticmethod(dropped.append))
    raw = Raw()
    cluster._run(cluster._return_steps(cluster._steering.nodes[0], raw, False, None))
    return raw, dropped


def test_a_write_s_position_read_on_return_is_what_causal_reads_wait_for(cluster: Any, monkeypatch: Any) -> None:
    raw, dropped = _run_return(cluster, monkeypatch, ("0-1-7",))
    assert raw.wrote is False and dropped == []
    assert cluster._steering.causal_text == "0-1-7" and not cluster._steering.causal_unknown


def test_a_failed_position_read_drops_the_connection_and_sends_causal_reads_to_the_primary(
    cluster: Any, monkeypatch: Any
) -> None:
    raw, dropped = _run_return(cluster, monkeypatch, pymysql.err.OperationalError(2013, "lost"))
    assert dropped == [raw] and cluster._steering.causal_unknown


def test_an_interrupted_position_read_drops_the_connection_and_the_interrupt_goes_on(
    cluster: Any, monkeypatch: Any
) -> None:
    with pytest.raises(KeyboardInterrupt):
        _run_return(cluster, monkeypatch, KeyboardInterrupt())
    steering = cluster._steering
    assert steering.causal_unknown and steering.causal_text == ""


def test_a_causal_wait_s_answer_decides_and_its_error_goes_to_the_shell(cluster: Any, monkeypatch: Any) -> None:
    steering = cluster._steering
    assert steering.took_gtid("0-1-9")
    pool = cluster.node_pools()[0]  # not a writer (nothing answered): a replica's wait
    for answer, caught_up in (((0,), True), ((-1,), False), (None, False)):
        monkeypatch.setattr(thread_cluster._driver, "fetch_one", _answers(answer))
        assert cluster._run(cluster._causal_steps(pool, Raw(), 1e18)) is caught_up
    monkeypatch.setattr(thread_cluster._driver, "fetch_one", _answers(pymysql.err.OperationalError(2013, "lost")))
    with pytest.raises(pymysql.err.OperationalError):
        cluster._run(cluster._causal_steps(pool, Raw(), 1e18))
    assert steering.stats["causal_waits"] == 4


def test_the_asyncio_shell_runs_the_same_plans_and_cancellation_drops_the_connection(monkeypatch: Any) -> None:
    pytest.importorskip("aiomysql")
    import pymysqlpool.aiocluster as async_cluster

    dropped: list[Any] = []
    monkeypatch.setattr(async_cluster.AsyncClusterPool, "_force_close", staticmethod(dropped.append))

    async def main() -> None:
        cluster = async_cluster.AsyncClusterPool(hosts=[("127.0.0.1", 9)], pre_create_num=0)
        try:
            node = cluster._steering.nodes[0]

            async def position(raw: Any, sql: str, args: Any = None, timeout: Any = None) -> Any:
                return ("0-2-3",)

            monkeypatch.setattr(async_cluster._adriver, "fetch_one", position)
            raw = Raw()
            await cluster._run(cluster._return_steps(node, raw, False, None))
            assert cluster._steering.causal_text == "0-2-3" and raw.wrote is False and dropped == []

            async def cancelled(raw: Any, sql: str, args: Any = None, timeout: Any = None) -> Any:
                raise asyncio.CancelledError()

            monkeypatch.setattr(async_cluster._adriver, "fetch_one", cancelled)
            raw = Raw()
            with pytest.raises(asyncio.CancelledError):
                await cluster._run(cluster._return_steps(node, raw, False, None))
            assert dropped == [raw] and cluster._steering.causal_unknown
        finally:
            await cluster.close()

    asyncio.run(asyncio.wait_for(main(), 30))
