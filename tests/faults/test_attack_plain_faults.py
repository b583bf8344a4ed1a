"""Attacks on the plain pools that need a private server behind a fault proxy
(an independent tester's checks, designed from the docs alone).

docs/parameters.md: `connect_timeout` "also bounds every wait the pool itself
starts: the handshake, a validation ping, a rollback on return"; with
reset_session=True the return's wait is the COM_RESET_CONNECTION and the
statements that re-apply the session's settings.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from _faultkit import assert_consistent, connection_id, create_user, user_kwargs

from support.tcp_proxy import TCPProxy
from support.throwaway_mariadb import ThrowawayMariaDB

pytestmark = pytest.mark.faults


def test_a_reset_on_return_into_a_black_hole_ends_by_connect_timeout(
    throwaway_server: ThrowawayMariaDB, make_proxy: Callable[[int], TCPProxy], make_pool: Callable[..., Any]
) -> None:
    user = "u_attack_reset_hole"
    create_user(throwaway_server, user)
    proxy = make_proxy(throwaway_server.port)
    connect_timeout = 1.0
    pool = make_pool(
        maxsize=1,
        timeout=10,
        reset_session=True,
        connect_timeout=connect_timeout,
        **user_kwargs(throwaway_server, user, port=proxy.port),
    )
    conn = pool.get_conn()
    first = connection_id(conn)
    proxy.blackhole()
    returned: list[float] = []

    def give_back() -> None:
        started = time.monotonic()
        pool.release(conn)
        returned.append(time.monotonic() - started)

    giver = threading.Thread(target=give_back)
    try:
        giver.start()
        giver.join(20)  # a hang fails here rather than freezing the run
        assert not giver.is_alive(), "release() hung in the reset"
    finally:
        proxy.heal(drop_stalled=True)
    # The contract (not a speed): connect_timeout, plus scheduling noise.
    assert returned and returned[0] < connect_timeout + 1.0, returned
    stats = pool.get_stats()
    assert stats["returns"] == 1 and stats["borrowed"] == 0 and stats["idle"] == 0
    # Its session state unknown, the connection was closed, never parked.
    assert stats["closed_broken"] == 1 and stats["session_resets"] <= 1
    with pool.connection(timeout=10) as again:
        assert connection_id(again) not in (0, first)
    assert_consistent(pool)
