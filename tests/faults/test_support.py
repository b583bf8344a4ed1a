"""Prove the fault-injection infrastructure itself works, against real servers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pymysql
import pytest
from pymysql.connections import Connection
from pymysql.err import OperationalError

from support.sessions import kill_sessions
from support.tcp_proxy import TCPProxy
from support.throwaway_mariadb import SHARED_SERVER_PORT, ThrowawayMariaDB
from support.waiting import wait_until

pytestmark = pytest.mark.faults

CR_CONN_HOST_ERROR = 2003  # "Can't connect to MySQL server"
SLEEPING = "SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = %s AND INFO LIKE 'SELECT SLEEP%%'"


@pytest.fixture
def background() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=2)
    yield executor
    executor.shutdown(wait=False, cancel_futures=True)


def connect(server: ThrowawayMariaDB, port: int | None = None, **overrides: Any) -> Connection:
    kwargs = {**server.connect_kwargs(), "connect_timeout": 2, "read_timeout": 10, **overrides}
    if port is not None:
        kwargs["port"] = port
    return pymysql.connect(**kwargs)


def query(conn: Connection, sql: str) -> tuple[tuple[Any, ...], ...]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return tuple(cur.fetchall())


# -- ThrowawayMariaDB -----------------------------------------------------------


def test_throwaway_server_is_private_and_answers(throwaway_server: ThrowawayMariaDB) -> None:
    assert throwaway_server.is_running()
    assert throwaway_server.port != SHARED_SERVER_PORT
    assert throwaway_server.admin_query("SELECT 1") == ((1,),)
    conn = connect(throwaway_server)
    try:
        ((port, datadir, database),) = query(conn, "SELECT @@port, @@datadir, DATABASE()")
    finally:
        conn.close()
    assert port == throwaway_server.port
    assert str(datadir).startswith(str(throwaway_server.root))
    assert database == "test"


def test_kill_and_start_keeps_committed_data(fresh_server: ThrowawayMariaDB) -> None:
    fresh_server.admin_query("CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB")
    fresh_server.admin_query("INSERT INTO t VALUES (1), (2)")
    port = fresh_server.port

    fresh_server.kill()
    assert not fresh_server.is_running()
    with pytest.raises(OperationalError):
        connect(fresh_server, connect_timeout=1)

    fresh_server.start()
    assert fresh_server.port == port
    assert fresh_server.admin_query("SELECT id FROM t ORDER BY id") == ((1,), (2,))


def test_pause_hangs_the_server_until_resume(fresh_server: ThrowawayMariaDB) -> None:
    conn = connect(fresh_server, read_timeout=1)
    try:
        fresh_server.pause()
        with pytest.raises(OperationalError):
            query(conn, "SELECT 1")
        fresh_server.resume()
        assert fresh_server.admin_query("SELECT 1") == ((1,),)
    finally:
        conn.close()


def test_stop_works_on_a_paused_server(fresh_server: ThrowawayMariaDB) -> None:
    fresh_server.pause()
    fresh_server.stop()
    assert not fresh_server.is_running()
    assert "Shutdown complete" in fresh_server.log_tail()


def test_make_server_passes_settings(make_server: Callable[..., ThrowawayMariaDB]) -> None:
    server = make_server(max_connections=12, extra_args=["--wait-timeout=42"])
    assert server.admin_query("SELECT @@max_connections, @@wait_timeout") == ((12, 42),)


def test_restart_and_stop_are_clean(throwaway_server: ThrowawayMariaDB) -> None:
    port = throwaway_server.port
    throwaway_server.restart()
    assert throwaway_server.is_running()
    assert throwaway_server.port == port
    assert throwaway_server.admin_query("SELECT 1") == ((1,),)

    throwaway_server.stop()
    assert not throwaway_server.is_running()
    assert "Shutdown complete" in throwaway_server.log_tail()
    with pytest.raises(OperationalError) as excinfo:
        connect(throwaway_server, connect_timeout=1)
    assert excinfo.value.args[0] == CR_CONN_HOST_ERROR


def test_throwaway_server_is_revived_after_a_test_stopped_it(
    throwaway_server: ThrowawayMariaDB,
) -> None:
    # Runs after test_restart_and_stop_are_clean, which left the server stopped.
    assert throwaway_server.admin_query("SELECT 1") == ((1,),)


# -- TCPProxy -------------------------------------------------------------------


def test_proxy_forwards_a_pymysql_connection(tcp_proxy: TCPProxy, throwaway_server: ThrowawayMariaDB) -> None:
    conn = connect(throwaway_server, tcp_proxy.port)
    try:
        assert query(conn, "SELECT 1") == ((1,),)
        assert tcp_proxy.active == 1
    finally:
        conn.close()
    assert tcp_proxy.accepted == 1
    assert wait_until(lambda: tcp_proxy.active == 0)


def test_proxy_rejects_non_loopback_targets() -> None:
    with pytest.raises(ValueError, match="loopback"):
        TCPProxy(target_host="192.0.2.1", target_port=3306)


def test_blackhole_times_out_queries_and_connects_then_heal(
    tcp_proxy: TCPProxy, throwaway_server: ThrowawayMariaDB
) -> None:
    conn = connect(throwaway_server, tcp_proxy.port, read_timeout=1)
    assert query(conn, "SELECT 1") == ((1,),)

    tcp_proxy.blackhole()
    with pytest.raises(OperationalError):
        query(conn, "SELECT 1")
    # PyMySQL's connect_timeout covers only the TCP connect, which the proxy
    # accepts; the wait for the server greeting is bounded by read_timeout.
    with pytest.raises(OperationalError):
        connect(throwaway_server, tcp_proxy.port, connect_timeout=1, read_timeout=1)

    tcp_proxy.heal()
    conn = connect(throwaway_server, tcp_proxy.port)
    try:
        assert query(conn, "SELECT 1") == ((1,),)
    finally:
        conn.close()


def test_heal_resumes_blackholed_connections(
    tcp_proxy: TCPProxy, throwaway_server: ThrowawayMariaDB, background: ThreadPoolExecutor
) -> None:
    conn = connect(throwaway_server, tcp_proxy.port, read_timeout=30)
    try:
        tcp_proxy.blackhole()
        result = background.submit(query, conn, "SELECT 42")
        # Not a timing assertion: the query must still be stuck while black-holed.
        assert not wait_until(result.done, timeout=0.5)
        tcp_proxy.heal()
        assert result.result(timeout=10) == ((42,),)
    finally:
        conn.close()


def test_heal_can_drop_blackholed_connections(tcp_proxy: TCPProxy, throwaway_server: ThrowawayMariaDB) -> None:
    conn = connect(throwaway_server, tcp_proxy.port)
    tcp_proxy.blackhole()
    tcp_proxy.heal(drop_stalled=True)
    with pytest.raises(OperationalError):
        query(conn, "SELECT 1")


def test_cut_all_breaks_idle_connections(tcp_proxy: TCPProxy, throwaway_server: ThrowawayMariaDB) -> None:
    conn = connect(throwaway_server, tcp_proxy.port)
    assert query(conn, "SELECT 1") == ((1,),)

    tcp_proxy.cut_all()
    assert tcp_proxy.active == 0
    with pytest.raises(OperationalError):
        query(conn, "SELECT 1")

    # cut_all is one-shot: new connections go through.
    conn = connect(throwaway_server, tcp_proxy.port)
    try:
        assert query(conn, "SELECT 1") == ((1,),)
    finally:
        conn.close()
    assert tcp_proxy.accepted == 2


def test_cut_all_breaks_an_in_flight_query(
    tcp_proxy: TCPProxy, throwaway_server: ThrowawayMariaDB, background: ThreadPoolExecutor
) -> None:
    conn = connect(throwaway_server, tcp_proxy.port, read_timeout=30)
    thread_id = conn.thread_id()
    result = background.submit(query, conn, "SELECT SLEEP(10)")
    try:
        assert wait_until(lambda: throwaway_server.admin_query(SLEEPING, (thread_id,)) != ())
        tcp_proxy.cut_all()
        with pytest.raises(OperationalError):
            result.result(timeout=10)
    finally:
        conn.close()
        # The server notices the reset only after SLEEP ends; do not leave it running.
        with contextlib.suppress(pymysql.MySQLError):
            kill_sessions(throwaway_server.admin_query, {thread_id})


def test_refuse_fails_connects_and_heal_listens_on_the_same_port(
    tcp_proxy: TCPProxy, throwaway_server: ThrowawayMariaDB
) -> None:
    port = tcp_proxy.port
    existing = connect(throwaway_server, port)
    try:
        tcp_proxy.refuse()
        with pytest.raises(OperationalError) as excinfo:
            connect(throwaway_server, port, connect_timeout=5)
        assert excinfo.value.args[0] == CR_CONN_HOST_ERROR
        assert "refused" in str(excinfo.value)
        # Refusing new connections leaves established ones alone.
        assert query(existing, "SELECT 1") == ((1,),)

        tcp_proxy.heal()
        assert tcp_proxy.port == port
        conn = connect(throwaway_server, port)
        try:
            assert query(conn, "SELECT 1") == ((1,),)
        finally:
            conn.close()
    finally:
        existing.close()


def test_close_resets_connections_and_stops_listening(throwaway_server: ThrowawayMariaDB) -> None:
    proxy = TCPProxy(target_port=throwaway_server.port)
    conn = connect(throwaway_server, proxy.port)
    proxy.close()
    with pytest.raises(OperationalError):
        query(conn, "SELECT 1")
    with pytest.raises(OperationalError):
        connect(throwaway_server, proxy.port, connect_timeout=1)
