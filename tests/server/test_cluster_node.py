"""A cluster's node pools dial like a plain pool: the pool's TLS contexts and
a keep-alive below the session's wait_timeout, plus connections that report
their writes (for causal reads)."""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from pymysqlpool import ClusterPool
from pymysqlpool._driver import WriteTrackingConnection
from support.waiting import wait_until

pytestmark = pytest.mark.server


def test_node_pools_keep_the_plain_pool_connect_rules(server_kwargs: dict[str, Any]) -> None:
    host, port = server_kwargs["host"], server_kwargs["port"]
    others = {k: v for k, v in server_kwargs.items() if k not in ("host", "port")}
    others["init_command"] = "SET SESSION wait_timeout = 8"
    with ClusterPool(hosts=[(host, port)], pool_name="node-rules", pre_create_num=1, **others) as cluster:
        with cluster.connection() as conn:
            raw = conn.raw
            assert isinstance(raw, WriteTrackingConnection)
        (node_pool,) = cluster.node_pools()
        assert raw._pool_tls is node_pool._tls  # one TLS context per pool, not one per connect
        keepalives = {slot.keepalive for slot in node_pool._slots}
        assert keepalives == {4.0}  # half the session's wait_timeout, below the 60 s default


def test_an_answer_through_cursor_execute_is_watched(server_kwargs: dict[str, Any]) -> None:
    """``cursor.execute`` goes through Connection.query, which reads its
    answer without ``_read_query_result``: an answer flagged "session state
    changed" is still seen. (The shared server keeps no binary log, so no
    write changes ``last_gtid`` here; a tracked variable's change raises the
    same flag, which is what the connection reads.)"""
    from pymysqlpool._driver import connect_tracking_writes

    raw = connect_tracking_writes(dict(server_kwargs), 5.0)
    try:
        assert isinstance(raw, WriteTrackingConnection)
        with raw.cursor() as cur:
            cur.execute("SET SESSION session_track_system_variables = 'last_gtid,time_zone'")
            raw.wrote = False
            cur.execute("SELECT 1")
            assert not raw.wrote
            cur.execute("SET SESSION time_zone = '+01:00'")
        assert raw.wrote
    finally:
        raw.close()


class Interrupt(BaseException):
    """Stands for KeyboardInterrupt without upsetting pytest."""


def _async_raise(thread: threading.Thread) -> bool:
    import ctypes

    assert thread.ident is not None
    hit = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(Interrupt))
    return bool(hit == 1)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the storm test of the pools runs on 3.11 and newer")
def test_an_asynchronous_exception_storm_leaves_the_cluster_monitor_working(server_kwargs: dict[str, Any]) -> None:
    """Borrowers' threads wake the monitor (``reprobe``) and wait for it
    (``wait_ready``, ``wait_probed``) while asynchronous exceptions land
    anywhere in them. Afterwards the monitor still probes on a wake-up and
    close() ends it. Before: those were a threading.Event and Condition, whose
    Python code an exception can leave with its lock held for good: the
    monitor then hangs in its next wait or publish."""
    host, port = server_kwargs["host"], server_kwargs["port"]
    others = {k: v for k, v in server_kwargs.items() if k not in ("host", "port")}
    rng = random.Random(11)
    cluster = ClusterPool(hosts=[(host, port)], pool_name="signal-storm", pre_create_num=0, **others)
    stop = [False]

    def worker() -> None:
        for _ in range(100_000):  # bounded; ends once stop is set
            try:
                for _ in range(100_000):
                    if stop[0]:
                        return
                    cluster.reprobe(0)
                    cluster.wait_ready(0.001)
                    cluster.wait_probed(0.001)
            except Interrupt:
                pass

    def in_thread(call: Callable[[], object], within: float) -> bool:
        """Run ``call`` on a daemon thread; whether it returned within ``within``
        seconds (a call hung on a lock left held must fail the test, not hang it)."""
        done = threading.Thread(target=call, daemon=True)
        done.start()
        return wait_until(lambda: not done.is_alive(), timeout=within)

    ended: list[str] = []
    old_hook, old_interval = threading.excepthook, sys.getswitchinterval()
    try:
        assert cluster.wait_ready(10)
        threading.excepthook = lambda args: ended.append(args.exc_type.__name__)
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(8)]
        sys.setswitchinterval(1e-5)
        try:
            for thread in threads:
                thread.start()
            injected = 0
            deadline = time.monotonic() + 6.0
            while injected < 2000 and time.monotonic() < deadline:
                if _async_raise(rng.choice(threads)):
                    injected += 1
                time.sleep(0.0005)
        finally:
            stop[0] = True
            sys.setswitchinterval(old_interval)
        assert wait_until(lambda: not any(t.is_alive() for t in threads), timeout=10), "a worker hangs in a wake-up"
        assert set(ended) <= {"Interrupt"} and injected >= 100, (ended, injected)
        (node,) = cluster._steering.nodes
        before = node.probed_at
        assert in_thread(lambda: cluster.reprobe(0), 5), "reprobe() hangs"
        assert wait_until(lambda: node.probed_at != before, timeout=10), "the monitor no longer probes"
        assert cluster.wait_ready(1) and cluster.wait_probed(1)
    finally:
        threading.excepthook = old_hook
        assert in_thread(cluster.close, 20), "close() hangs"
    assert wait_until(lambda: not cluster._monitor.is_alive(), timeout=10), "close() left the monitor running"
