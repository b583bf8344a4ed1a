"""Warm-up against the real server: pre_create_num connections opened
concurrently are all real, distinct sessions; a failed warm-up leaves none;
the pool's connects build no TLS context against a server that offers no TLS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pymysql
import pytest
from server_helpers import ServerView, mysql_kwargs, query

from pymysqlpool import ConnectionPool
from support.tls_contexts import count_tls_contexts

pytestmark = pytest.mark.server


def test_fifty_warm_connections_are_fifty_sessions(
    make_pool: Callable[..., ConnectionPool], server_view: ServerView, admin: Any
) -> None:
    pool = make_pool(maxsize=50, size=50, pre_create_num=50, pool_name="warm-50")
    stats = pool.get_stats()
    assert (stats["open"], stats["idle"], stats["connecting"], stats["connections_made"]) == (50, 50, 0, 50)
    assert server_view.count(admin) == 50
    conns = [pool.get_conn() for _ in range(50)]
    try:
        ids = {c.thread_id() for c in conns}
        assert ids == server_view.thread_ids(admin)
        assert pool.get_stats()["connections_made"] == 50  # every borrow was served warm
    finally:
        for conn in conns:
            conn.close()


def test_a_failed_warm_up_leaves_no_session(
    server_view: ServerView, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The 30th connect fails (a server at its limit, say); the ones already
    # open and those in flight must all be closed.
    from pymysqlpool import _driver

    real = _driver.connect
    calls = [0]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 30:
            raise pymysql.err.OperationalError(1040, "Too many connections")
        return real(*args, **kwargs)

    monkeypatch.setattr(_driver, "connect", flaky)
    with pytest.raises(pymysql.err.OperationalError, match="Too many"):
        ConnectionPool(maxsize=40, pre_create_num=40, **server_view.connect_kwargs)
    assert server_view.settles_at(admin, 0, timeout=10.0), sorted(server_view.thread_ids(admin))
    assert 30 <= calls[0] <= 30 + 7  # after the failure only the dials in flight finished


def test_preferred_mode_builds_one_tls_context_at_most(
    make_pool: Callable[..., ConnectionPool], admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    offers_tls = query(admin, "SELECT @@have_ssl")[0][0] == "YES"
    built = count_tls_contexts(monkeypatch)
    pool = make_pool(maxsize=4, pre_create_num=4, pool_name="preferred")
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        assert bool(cur.fetchone()[1]) == offers_tls
    # None against a server without TLS (the usual case here), else one for all four.
    assert built() == (1 if offers_tls else 0)
    pymysql.connect(**mysql_kwargs()).close()
    assert built() == (1 if offers_tls else 0) + 1  # PyMySQL alone builds one per connect
