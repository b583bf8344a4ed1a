"""Promises of README.md and docs/ that no other test showed against the real
server, each with its adversary (the audit: /work/notes/close/promises-audit.md
at the time of writing). The doc and its words are quoted above each test.

Both shells unless the promise is one pool's alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from server_helpers import query

pytestmark = pytest.mark.server

SLACK = 5.0  # scheduling noise on a loaded machine: far below the waits a broken bound would show


def com_rollback(conn: Any) -> int:
    """ROLLBACKs this server session received (no other client can move it)."""
    return int(query(conn, "SHOW SESSION STATUS LIKE 'Com_rollback'")[0][1])


# -- docs/guide.md "Borrowing and giving back" ---------------------------------
# "`release(conn, failed=True)` says that the borrower's work went wrong: the
# connection is rolled back before anyone else gets it, whatever its status
# bits say (a `with` block that raises passes `failed=True` itself)."
# The adversary: status bits that say "clean" (no transaction, autocommit as
# lent), the case where a normal return sends nothing.


def test_failed_release_rolls_back_whatever_the_status_bits_say(make_pool: Callable[..., Any], shell: str) -> None:
    pool = make_pool(maxsize=1, validation_interval=3600, keepalive_interval=0)
    conn = pool.get_conn()
    session = conn.thread_id()
    before = com_rollback(conn)
    assert not conn.server_status & 1  # SERVER_STATUS_IN_TRANS: the bits say clean
    pool.release(conn, failed=True)

    conn = pool.get_conn()
    assert conn.thread_id() == session
    assert com_rollback(conn) == before + 1  # the server got the ROLLBACK
    pool.release(conn)  # a clean return: nothing

    # A with block that raises passes failed=True itself (the pool's own
    # connection(): on asyncio the real `async with`, not the test facade's).
    with pytest.raises(RuntimeError, match="halfway"):
        if shell == "thread":
            with pool.connection():
                raise RuntimeError("halfway")
        else:

            async def block() -> None:
                async with pool._pool.connection():
                    raise RuntimeError("halfway")

            pool._call(block())
    conn = pool.get_conn()
    assert conn.thread_id() == session
    assert com_rollback(conn) == before + 2
    pool.release(conn)
    stats = pool.get_stats()
    assert stats["rollbacks_on_return"] == 2
    assert stats["returns"] == stats["uses"] == stats["borrows"] == 4  # docs/stats.md: uses equals returns
