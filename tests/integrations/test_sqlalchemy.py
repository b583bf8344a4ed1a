"""SQLAlchemy through pymysqlpool.sqlalchemy against the real server: commits
and rollbacks with the pool's default autocommit=True, connections back in
the pool when a Connection or Session closes, and the round trips counted by
the server."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from integration_helpers import counted, values
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from pymysqlpool import ConnectionPool
from pymysqlpool.sqlalchemy import create_engine
from support.sessions import kill_sessions

pytestmark = pytest.mark.server


def _table(name: str) -> sa.Table:
    return sa.Table(name, sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", sa.Integer))


def test_naive_creator_loses_rollbacks(make_pool: Any, table: str, admin: Any) -> None:
    """Why the helper exists: a bare creator on an autocommit pool commits every statement."""
    pool = make_pool()
    naive = sa.create_engine("mysql+pymysql://", creator=pool.get_conn, poolclass=sa.NullPool)
    with naive.connect() as conn:
        conn.execute(_table(table).insert(), {"v": 1})
        conn.rollback()
    assert values(admin, table) == [1]


@pytest.mark.parametrize("autocommit", [True, False])
def test_core_commit_and_rollback(make_pool: Any, table: str, admin: Any, autocommit: bool) -> None:
    pool = make_pool(autocommit=autocommit)
    engine = create_engine(pool)
    t = _table(table)
    with engine.begin() as conn:
        conn.execute(t.insert(), {"v": 1})
    with engine.connect() as conn:
        conn.execute(t.insert(), {"v": 2})
        conn.rollback()
        conn.execute(t.insert(), {"v": 3})
        # closed without commit: rolled back
    with pytest.raises(ZeroDivisionError), engine.begin() as conn:
        conn.execute(t.insert(), {"v": 4})
        raise ZeroDivisionError
    assert values(admin, table) == [1]
    stats = pool.get_stats()
    assert stats["borrowed"] == 0 and stats["borrows"] == stats["returns"] == 3


class _Base(DeclarativeBase):
    pass


def test_orm_session(make_pool: Any, table: str, admin: Any) -> None:
    class Item(_Base):
        __tablename__ = table
        id: Mapped[int] = mapped_column(primary_key=True)
        v: Mapped[int]

    try:
        pool = make_pool()
        engine = create_engine(pool)
        with Session(engine) as session:
            session.add(Item(v=10))
            session.commit()
            assert pool.get_stats()["borrowed"] == 0  # commit ended the checkout
            session.add(Item(v=20))
            session.flush()
            assert pool.get_stats()["borrowed"] == 1
            session.rollback()
            session.add(Item(v=30))
            session.flush()
        # the with block closed the session without commit
        assert pool.get_stats()["borrowed"] == 0
        assert values(admin, table) == [10]
        with Session(engine) as session, session.begin():
            assert [item.v for item in session.query(Item)] == [10]
            session.query(Item).filter_by(v=10).update({"v": 11})
        assert values(admin, table) == [11]
    finally:
        _Base.metadata.clear()


def test_round_trips_counted_by_the_server(make_pool: Any, table: str) -> None:
    pool = make_pool(maxsize=1)  # one session: its counters see everything
    engine = create_engine(pool)
    t = _table(table)
    engine.connect().close()  # the engine's first connect reads the server's settings once

    def committed() -> None:
        with engine.begin() as conn:
            conn.execute(t.insert(), {"v": 1})

    assert counted(pool, committed) == {"com_begin": 1, "com_commit": 1, "com_rollback": 0, "questions": 3}

    def read_and_close() -> None:
        with engine.connect() as conn:
            conn.execute(sa.select(t.c.v)).all()

    # SQLAlchemy's reset on return rolls back once; the pool then finds the connection clean.
    assert counted(pool, read_and_close) == {"com_begin": 1, "com_commit": 0, "com_rollback": 1, "questions": 3}

    def session_commit() -> None:
        with Session(engine) as session:
            session.execute(t.insert(), {"v": 2})
            session.commit()

    assert counted(pool, session_commit) == {"com_begin": 1, "com_commit": 1, "com_rollback": 0, "questions": 3}
    assert pool.get_stats()["rollbacks_on_return"] == 0


def test_autocommit_isolation_level_sends_no_begin(make_pool: Any, table: str, admin: Any) -> None:
    pool = make_pool(maxsize=1)
    engine = create_engine(pool).execution_options(isolation_level="AUTOCOMMIT")
    t = _table(table)
    engine.connect().close()

    def autocommitted() -> None:
        with engine.connect() as conn:
            conn.execute(t.insert(), {"v": 5})
            conn.commit()  # nothing open: no COMMIT sent

    assert counted(pool, autocommitted) == {"com_begin": 0, "com_commit": 0, "com_rollback": 0, "questions": 1}
    assert values(admin, table) == [5]
    # The next plain checkout is transactional again.
    with create_engine(pool).connect() as conn:
        conn.execute(t.insert(), {"v": 6})
    assert values(admin, table) == [5]


def test_engine_isolation_level_set_once_per_session(make_pool: Any) -> None:
    pool = make_pool(maxsize=1)
    engine = create_engine(pool, isolation_level="READ COMMITTED")
    for _ in range(3):
        with engine.connect() as conn:
            level = conn.execute(sa.text("SELECT @@tx_isolation")).scalar()
    assert level == "READ-COMMITTED"

    def checkout() -> None:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1")).all()

    # BEGIN, SELECT, ROLLBACK: no SET SESSION per checkout.
    assert counted(pool, checkout)["questions"] == 3


def test_engine_isolation_level_survives_session_resets(make_pool: Any) -> None:
    pool = make_pool(maxsize=1, reset_session=True)  # COM_RESET_CONNECTION on every return
    engine = create_engine(pool, isolation_level="READ COMMITTED")
    for _ in range(3):
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT @@tx_isolation")).scalar() == "READ-COMMITTED"


def test_invalidated_connection_is_not_lent_again(make_pool: Any) -> None:
    pool = make_pool(maxsize=1)
    engine = create_engine(pool)
    with engine.connect() as conn:
        first = conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar()
        conn.invalidate()
    with engine.connect() as conn:
        second = conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar()
    assert first != second
    assert pool.get_stats()["closed_broken"] == 1


def test_url_form_and_refused_keywords(server_kwargs: dict[str, Any]) -> None:
    k = server_kwargs
    url = f"mysql+pymysql://{k['user']}:{k['password']}@{k['host']}:{k['port']}/{k['database']}?maxsize=2"
    engine = create_engine(url)
    pool = engine.dialect.connection_pool  # type: ignore[attr-defined]
    try:
        assert isinstance(pool, ConnectionPool) and pool.maxsize == 2
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        pool.close()
    with pytest.raises(TypeError, match="creator"):
        create_engine(pool, creator=lambda: None)
    with pytest.raises(ValueError, match="closed"):
        create_engine(pool)
    with pytest.raises(ValueError, match="MySQL"):
        create_engine("postgresql://u@h/db")


def test_connection_killed_mid_session_is_replaced(make_pool: Any, table: str, admin: Any) -> None:
    from server.server_helpers import query

    pool = make_pool(maxsize=1)
    engine = create_engine(pool)
    t = _table(table)
    with engine.connect() as conn:
        conn.execute(t.insert(), {"v": 1})  # uncommitted when the server kills the session
        victim = conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar()
        kill_sessions(lambda sql: query(admin, sql), {int(victim)})
        with pytest.raises(sa.exc.OperationalError) as caught:
            conn.execute(t.insert(), {"v": 2})
        assert caught.value.connection_invalidated
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar() != victim
        conn.execute(t.insert(), {"v": 3})
    assert values(admin, table) == [3]
    stats = pool.get_stats()
    assert stats["borrowed"] == 0 and stats["open"] == 1


def test_pool_timeout_reaches_the_caller(make_pool: Any) -> None:
    from pymysqlpool import PoolTimeout

    pool = make_pool(maxsize=1, timeout=0.05)
    engine = create_engine(pool)
    with engine.connect() as held:
        held.execute(sa.text("SELECT 1"))
        with pytest.raises(PoolTimeout):
            engine.connect()
    assert pool.get_stats()["borrowed"] == 0
    with engine.connect() as conn:  # and the engine works again
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1


def test_keyboard_interrupt_mid_statement(make_pool: Any, table: str, admin: Any) -> None:
    pool = make_pool(maxsize=1)
    engine = create_engine(pool)
    t = _table(table)
    interrupt = {"armed": False}

    @sa.event.listens_for(engine, "before_cursor_execute")
    def interrupted(*args: Any) -> None:
        if interrupt["armed"]:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), engine.connect() as conn:
        conn.execute(t.insert(), {"v": 1})
        interrupt["armed"] = True
        conn.execute(t.insert(), {"v": 2})
    interrupt["armed"] = False
    # SQLAlchemy invalidates a connection interrupted mid-statement: the pool
    # closed it instead of lending a session in an unknown state again.
    stats = pool.get_stats()
    assert stats["borrowed"] == 0 and stats["closed_broken"] == 1
    assert values(admin, table) == []
    with engine.begin() as conn:
        conn.execute(t.insert(), {"v": 3})
    assert values(admin, table) == [3]


def _url(k: dict[str, Any], scheme: str, query: str = "") -> str:
    return f"{scheme}://{k['user']}:{k['password']}@{k['host']}:{k['port']}/{k['database']}{query}"


def _flush_unchanged(engine: sa.Engine, table: str) -> tuple[int, bool]:
    """An UPDATE that matches one row and changes nothing, by Core (its rowcount)
    and by an ORM flush of a DATETIME given microseconds the column drops
    (StaleDataError where rowcount counts changed rows); and the dialect's
    supports_sane_rowcount."""
    import datetime

    meta = sa.MetaData()
    stamped = sa.Table(f"{table}_dt", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("at", sa.DateTime))

    class Stamp(_Base):
        __table__ = stamped

    at = datetime.datetime(2026, 1, 2, 3, 4, 5)
    try:
        meta.create_all(engine)
        with Session(engine) as session:
            session.add(Stamp(id=1, at=at))
            session.commit()
            with engine.begin() as conn:
                rowcount = conn.execute(stamped.update().where(stamped.c.id == 1).values(at=at)).rowcount
            stamp = session.get(Stamp, 1)
            assert stamp is not None
            stamp.at = at.replace(microsecond=250)  # stored as the same second: 0 rows changed, 1 matched
            session.commit()
        return rowcount, engine.dialect.supports_sane_rowcount
    finally:
        meta.drop_all(engine)
        _Base.metadata.clear()
        _Base.registry.dispose()


def test_rowcount_is_rows_matched_through_a_url(server_kwargs: dict[str, Any], table: str) -> None:
    engine = create_engine(_url(server_kwargs, "mysql+pymysql", "?maxsize=2&ssl_disabled=true"))
    try:
        assert _flush_unchanged(engine, table) == (1, True)
    finally:
        engine.dialect.connection_pool.close()  # type: ignore[attr-defined]


def test_pool_with_found_rows_keeps_sane_rowcount(make_pool: Any, table: str) -> None:
    from pymysql.constants import CLIENT

    engine = create_engine(make_pool(client_flag=CLIENT.FOUND_ROWS | CLIENT.MULTI_STATEMENTS))
    assert _flush_unchanged(engine, table) == (1, True)


def test_pool_without_found_rows_says_rowcount_is_not_sane(make_pool: Any, table: str) -> None:
    """Rows changed, not matched: the dialect says so and the ORM does not
    take 0 for a row someone else deleted."""
    engine = create_engine(make_pool())
    assert _flush_unchanged(engine, table) == (0, False)


def test_registered_url_scheme_borrows_from_a_pool(server_kwargs: dict[str, Any], table: str) -> None:
    """``mysql+pymysqlpool://`` in plain sqlalchemy.create_engine: every checkout
    is a borrow from one pool per process and URL (query: pool keywords)."""
    from pymysqlpool.sqlalchemy import close_pools, pool_for_url

    url = _url(server_kwargs, "mysql+pymysqlpool", f"?maxsize=3&pool_name={table}&ssl_disabled=true")
    engine = sa.create_engine(url)
    other = sa.create_engine(url, isolation_level="READ COMMITTED")
    try:
        assert isinstance(engine.pool, sa.NullPool)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            pool = pool_for_url(url)
            assert pool is not None and pool.name == table and pool.maxsize == 3
            assert pool.get_stats()["borrowed"] == 1
        with other.connect() as conn:
            assert conn.execute(sa.text("SELECT @@tx_isolation")).scalar() == "READ-COMMITTED"
        with engine.connect() as conn:  # the other engine's level is not this one's
            assert conn.execute(sa.text("SELECT @@tx_isolation")).scalar() == "REPEATABLE-READ"
        assert pool_for_url(url) is pool and pool.get_stats()["borrowed"] == 0
        assert _flush_unchanged(engine, table) == (1, True)
        unnamed = pool_for_url(url.replace(f"pool_name={table}&", ""))
        assert unnamed is not pool and unnamed.name.startswith(f"{server_kwargs['host']}-")  # as ConnectionPool names
    finally:
        close_pools()
    assert pool.closed and unnamed.closed
    with pytest.raises(ValueError, match="MySQL"):
        pool_for_url("postgresql://u@127.0.0.1/db")


def test_url_scheme_is_an_installed_entry_point() -> None:
    """A fresh interpreter finds the dialect without importing pymysqlpool first."""
    import subprocess
    import sys

    code = (
        "import sqlalchemy as sa, sys\n"
        "for scheme in ('mysql', 'mariadb'):\n"
        "    e = sa.create_engine(scheme + '+pymysqlpool://u@127.0.0.1/db')\n"
        "    print(type(e.dialect).__module__, type(e.dialect).__name__, e.dialect.name)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == [
        *("pymysqlpool.sqlalchemy", "PoolDialect", "mysql"),
        *("pymysqlpool.sqlalchemy", "MariaDBPoolDialect", "mariadb"),
    ]
