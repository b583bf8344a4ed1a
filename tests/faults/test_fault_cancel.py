"""The kill of an abandoned statement when the server cannot be reached.

A statement cut by read_timeout is killed from a side connection; here that
connection goes through a proxy that black-holes it (the kill ends by its
bound, connect_timeout, and frees the slot) or refuses it for a while (the
kill is retried and goes through once the server answers again). The
borrower that abandoned the statement never waits for the kill.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, NamedTuple

import pymysql
import pytest
from _faultkit import connection_id, create_user, session_ids, user_kwargs

from pymysqlpool import PoolTimeout
from support.sessions import sessions_ended
from support.tcp_proxy import TCPProxy
from support.throwaway_mariadb import ThrowawayMariaDB
from support.waiting import wait_until

pytestmark = pytest.mark.faults

CUT = 0.5  # read_timeout: the borrower abandons its statement after this long
SLACK = 2.0  # seconds of scheduling allowed beyond a contract bound


def cleaned(server: ThrowawayMariaDB, user: str) -> AbstractContextManager[None]:
    """End the test's sessions still sleeping on the shared throwaway server."""
    return sessions_ended(server.admin_query, user, gone_within=10)


def proxied_pool(
    server: ThrowawayMariaDB,
    make_proxy: Callable[[int], TCPProxy],
    make_pool: Callable[..., Any],
    user: str,
    connect_timeout: float,
) -> tuple[TCPProxy, Any]:
    """A proxy to ``server`` and a pool of one connection through it, logged
    in as ``user``, whose statements are cut by read_timeout."""
    proxy = make_proxy(server.port)
    create_user(server, user)
    pool = make_pool(
        **user_kwargs(server, user, port=proxy.port), maxsize=1, connect_timeout=connect_timeout, read_timeout=CUT
    )
    return proxy, pool


def abandon_while(pool: Any, fault: Callable[[], None]) -> tuple[int, float]:
    """Borrow, start a 30 s statement, let ``fault`` hit the network while it
    runs, and give the connection back once read_timeout cut the statement.
    Returns the session's id and the moment the release returned."""
    conn = pool.get_conn(timeout=10)
    session = connection_id(conn)
    timer = threading.Timer(0.2, fault)
    timer.start()
    try:
        with pytest.raises(pymysql.err.OperationalError):
            conn.cursor().execute("SELECT SLEEP(30)")
    finally:
        timer.join(5)
        pool.release(conn)
    return session, time.monotonic()


class Abandoned(NamedTuple):
    proxy: TCPProxy
    pool: Any
    session: int  # the abandoned statement's session
    released: float  # when the release returned


@contextmanager
def abandoned_behind_proxy(
    server: ThrowawayMariaDB,
    make_proxy: Callable[[int], TCPProxy],
    make_pool: Callable[..., Any],
    user: str,
    connect_timeout: float,
    fault: Callable[[TCPProxy], None],
) -> Iterator[Abandoned]:
    """A pool of one connection through a proxy, whose statement was
    abandoned while ``fault`` (``TCPProxy.blackhole``, ``TCPProxy.refuse``)
    hit the proxy; ``user``'s sessions are killed afterwards."""
    proxy, pool = proxied_pool(server, make_proxy, make_pool, user, connect_timeout)
    with cleaned(server, user):
        yield Abandoned(proxy, pool, *abandon_while(pool, lambda: fault(proxy)))


def test_a_black_holed_kill_frees_the_slot_at_its_bound(
    throwaway_server: ThrowawayMariaDB, make_proxy: Callable[[int], TCPProxy], make_pool: Callable[..., Any], shell: str
) -> None:
    user = f"u_cancel_hole_{shell}"
    connect_timeout = 1.5
    with abandoned_behind_proxy(throwaway_server, make_proxy, make_pool, user, connect_timeout, TCPProxy.blackhole) as (
        proxy,
        pool,
        session,
        released,
    ):
        # The release returned while the kill still hangs in the hole: the
        # borrower did not wait for it, and the slot is still counted.
        stats = pool.get_stats()
        assert stats["killing"] == 1 and stats["open"] == 1, stats
        with pytest.raises(PoolTimeout):
            pool.get_conn(timeout=0)
        assert wait_until(lambda: pool.get_stats()["killing"] == 0, timeout=connect_timeout + SLACK)
        held = time.monotonic() - released
        stats = pool.get_stats()
        assert stats["kill_failures"] == 1 and stats["kills"] == 0 and stats["open"] == 0, stats
        assert held >= connect_timeout - CUT, "freed before its bound without proof"
        assert session in session_ids(throwaway_server, user), "the kill did reach the server"
        proxy.heal(drop_stalled=True)
        with pool.connection(timeout=10) as conn:  # the slot was given back
            assert connection_id(conn) != session


def test_a_refused_kill_is_retried_until_the_server_answers(
    throwaway_server: ThrowawayMariaDB, make_proxy: Callable[[int], TCPProxy], make_pool: Callable[..., Any], shell: str
) -> None:
    user = f"u_cancel_refused_{shell}"
    connect_timeout = 10.0
    # New connections refused, the pool's own one flows.
    with abandoned_behind_proxy(throwaway_server, make_proxy, make_pool, user, connect_timeout, TCPProxy.refuse) as (
        proxy,
        pool,
        session,
        released,
    ):
        assert pool.get_stats()["killing"] == 1
        assert not wait_until(lambda: pool.get_stats()["killing"] == 0, timeout=0.5), "freed without a kill"
        proxy.heal()
        assert wait_until(lambda: session not in session_ids(throwaway_server, user), timeout=connect_timeout)
        assert wait_until(lambda: pool.get_stats()["killing"] == 0, timeout=5)
        stats = pool.get_stats()
        assert stats["kills"] == 1 and stats["kill_failures"] == 0, stats
        assert time.monotonic() - released < connect_timeout, "freed by its bound, not by the kill"


def test_close_waits_for_a_kill_in_flight(
    throwaway_server: ThrowawayMariaDB, make_proxy: Callable[[int], TCPProxy], make_pool: Callable[..., Any], shell: str
) -> None:
    """close() returns once the kills in flight ended (here: by their bound),
    so no kill is cut short by the end of the program or of its event loop."""
    user = f"u_cancel_close_{shell}"
    connect_timeout = 1.5
    with abandoned_behind_proxy(throwaway_server, make_proxy, make_pool, user, connect_timeout, TCPProxy.blackhole) as (
        proxy,
        pool,
        _session,
        released,
    ):
        assert pool.get_stats()["killing"] == 1
        pool.close()
        stats = pool.get_stats()
        assert stats["killing"] == 0 and stats["open"] == 0 and stats["kill_failures"] == 1, stats
        assert time.monotonic() - released >= connect_timeout - CUT, "close() did not wait for the kill"
        proxy.heal(drop_stalled=True)


def test_a_kill_into_a_frozen_server_frees_the_slot_at_its_bound(
    fresh_server: ThrowawayMariaDB, make_pool: Callable[..., Any], shell: str
) -> None:
    """The server freezes (SIGSTOP) in the middle of a statement: read_timeout
    cuts it, and the kill's side connection gets a TCP handshake but never a
    greeting. The borrower does not wait; the slot is freed at the kill's
    bound, a failed kill; once the server thaws, the pool works again."""
    user = f"u_cancel_frozen_{shell}"
    create_user(fresh_server, user)
    connect_timeout = 1.5
    pool = make_pool(**user_kwargs(fresh_server, user), maxsize=1, connect_timeout=connect_timeout, read_timeout=CUT)
    try:
        session, released = abandon_while(pool, fresh_server.pause)
        assert pool.get_stats()["killing"] == 1
        assert wait_until(lambda: pool.get_stats()["killing"] == 0, timeout=connect_timeout + SLACK)
        assert time.monotonic() - released >= connect_timeout - CUT, "freed before its bound without proof"
        stats = pool.get_stats()
        assert stats["kill_failures"] == 1 and stats["kills"] == 0 and stats["open"] == 0, stats
    finally:
        fresh_server.resume()
    assert session in session_ids(fresh_server, user), "the frozen server killed it after all"
    with pool.connection(timeout=10) as conn:
        assert connection_id(conn) != session


def test_no_kill_reaches_a_session_that_reused_the_id_after_a_restart(
    fresh_server: ThrowawayMariaDB, make_proxy: Callable[[int], TCPProxy], make_pool: Callable[..., Any], shell: str
) -> None:
    """The kill of an abandoned session cannot get through until the server
    restarted, and by then another session of the same account holds the id
    (ids start again at 1): the kill sees the restart (uptime shorter than
    the session's age) and sends no KILL; the other session lives on."""
    user = f"u_cancel_reused_{shell}"
    proxy, pool = proxied_pool(fresh_server, make_proxy, make_pool, user, 10.0)
    session, _released = abandon_while(pool, proxy.blackhole)  # the kill hangs in the hole
    assert pool.get_stats()["killing"] == 1
    time.sleep(1.5)  # the session is older than the restarted server will be
    fresh_server.restart()
    others = []
    collider = None
    for _ in range(max(session, 1) + 50):  # bounded: ids count up from 1 again
        conn = pymysql.connect(**user_kwargs(fresh_server, user), connect_timeout=5)
        if connection_id(conn) == session:
            collider = conn
            break
        others.append(conn)
    for conn in others:
        conn.close()
    assert collider is not None, f"id {session} was not given out again"
    try:
        proxy.heal(drop_stalled=True)  # the stalled kill fails; its retry reaches the new server
        assert wait_until(lambda: pool.get_stats()["killing"] == 0, timeout=15)
        stats = pool.get_stats()
        assert stats["kills"] == 1 and stats["kill_failures"] == 0, stats
        collider.ping(reconnect=False)  # not killed
    finally:
        collider.close()
