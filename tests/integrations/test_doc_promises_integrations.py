"""docs/integrations.md promises no other integration test showed.

"`create_engine(pool_or_url, **engine_kwargs)` returns an ordinary
SQLAlchemy `Engine` ... the pool is `engine.dialect.connection_pool` either
way, and `engine.dispose()` does not close it: `pool.close()` does."
The adversary: an engine disposed while one of its connections is still
checked out, and an engine made from a URL (whose pool the helper made).
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from pymysqlpool.sqlalchemy import create_engine

pytestmark = pytest.mark.server


def test_engine_dispose_leaves_the_pool_open(make_pool: Any, server_kwargs: dict[str, Any], prefix: str) -> None:
    pool = make_pool()
    engine = create_engine(pool)
    assert engine.dialect.connection_pool is pool
    held = engine.connect()
    held.execute(sa.text("SELECT 1"))
    engine.dispose()  # with a connection still checked out
    assert not pool.closed
    assert held.execute(sa.text("SELECT 2")).scalar() == 2  # the borrowed one keeps working
    held.close()
    assert pool.get_stats()["borrowed"] == 0
    with engine.connect() as conn:  # the disposed engine borrows again from the same pool
        assert conn.execute(sa.text("SELECT 3")).scalar() == 3

    server = server_kwargs
    url = (
        f"mysql://{server['user']}:{server.get('password') or ''}@{server['host']}:{server['port']}"
        f"/{server['database']}?maxsize=2&pool_name={prefix}-url&ssl_disabled=true"
    )
    made = create_engine(url)
    try:
        own = made.dialect.connection_pool
        made.dispose()
        assert not own.closed
        with made.connect() as conn:
            assert conn.execute(sa.text("SELECT 4")).scalar() == 4
    finally:
        own.close()  # pool.close() does
    assert own.closed
