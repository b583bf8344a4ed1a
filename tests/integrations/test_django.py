"""pymysqlpool.django in a real minimal Django project (tests/integrations/django_project)
against the shared MariaDB, in a throwaway database: migrate, ORM, atomic,
request cycles through Django's WSGI handler (so request_started and
request_finished fire as in production), threads, CONN_MAX_AGE and
CONN_HEALTH_CHECKS."""

from __future__ import annotations

import io
import os
import secrets
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from integration_helpers import counted

from server.server_helpers import query, raw_connect
from support.sessions import kill_sessions

pytestmark = pytest.mark.server

PROJECT = Path(__file__).parent / "django_project"


@pytest.fixture(scope="module")
def django_db(server_kwargs: dict[str, Any]) -> Iterator[str]:
    """Django set up on a fresh database; the database is dropped at the end."""
    name = f"it_dj_{secrets.token_hex(5)}"
    admin = raw_connect()
    query(admin, f"CREATE DATABASE `{name}`")
    saved_env = {key: os.environ.get(key) for key in ("PYMYSQLPOOL_DJANGO_DB", "DJANGO_SETTINGS_MODULE")}
    os.environ["PYMYSQLPOOL_DJANGO_DB"] = name
    os.environ["DJANGO_SETTINGS_MODULE"] = "djproject.settings"
    sys.path.insert(0, str(PROJECT))
    try:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", database="default", verbosity=0)
        yield name
    finally:
        from django.db import connections

        from pymysqlpool.django import close_pools

        connections.close_all()
        close_pools()
        query(admin, f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()
        sys.path.remove(str(PROJECT))
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def request(path: str) -> tuple[int, str]:
    """One request through Django's WSGI handler, response closed as a server would."""
    from django.core.handlers.wsgi import WSGIHandler

    url, _, qs = path.partition("?")
    environ: dict[str, Any] = {"PATH_INFO": url, "QUERY_STRING": qs, "wsgi.errors": io.StringIO()}
    setup_testing_defaults(environ)
    status: list[str] = []
    result = WSGIHandler()(environ, lambda s, headers, exc_info=None: status.append(s))
    try:
        body = b"".join(result).decode()
    finally:
        result.close()  # sends request_finished: Django closes old connections
    return int(status[0].split()[0]), body


def _pool(alias: str = "default") -> Any:
    from pymysqlpool.django import pool_for_alias

    pool = pool_for_alias(alias)
    assert pool is not None
    return pool


def _rows(name: str, where: str = "") -> int:
    conn = raw_connect(database=name)
    try:
        return int(query(conn, f"SELECT COUNT(*) FROM notes_note {where}")[0][0])
    finally:
        conn.close()


def test_mysqldb_shim_leaves_no_trace(django_db: str) -> None:
    import pymysql
    from django.db import connections

    assert "MySQLdb" not in sys.modules  # importable only by the backend's own import
    assert connections["default"].Database.version_info == pymysql.version_info
    assert connections["default"].Database.connect is pymysql.connect


def test_migrate_and_orm_crud(django_db: str) -> None:
    from django.db import close_old_connections, connection
    from notes.models import Note

    assert "notes_note" in connection.introspection.table_names()
    note = Note.objects.create(text="first")
    assert Note.objects.get(pk=note.pk).text == "first"
    Note.objects.filter(pk=note.pk).update(text="second")
    assert Note.objects.get(pk=note.pk).text == "second"
    assert Note.objects.filter(pk=note.pk).update(text="second") == 1  # matched rows (FOUND_ROWS)
    Note.objects.filter(pk=note.pk).delete()
    assert not Note.objects.filter(pk=note.pk).exists()
    assert _pool().get_stats()["borrowed"] == 1  # Django holds it outside a request...
    close_old_connections()  # ...until it closes old connections (CONN_MAX_AGE = 0)
    assert _pool().get_stats()["borrowed"] == 0


def test_atomic_commit_and_rollback(django_db: str) -> None:
    from django.db import close_old_connections, transaction
    from notes.models import Note

    before = _rows(django_db)
    with transaction.atomic():
        Note.objects.create(text="kept")
        with pytest.raises(ValueError), transaction.atomic():  # savepoint
            Note.objects.create(text="savepoint")
            raise ValueError
    with pytest.raises(ValueError), transaction.atomic():
        Note.objects.create(text="gone")
        raise ValueError
    close_old_connections()
    assert _rows(django_db) == before + 1
    assert _rows(django_db, "WHERE text IN ('savepoint', 'gone')") == 0


def test_request_cycle_returns_the_connection(django_db: str) -> None:
    pool = _pool()
    made = pool.get_stats()["connections_made"]
    ids = {request("/conn")[1] for _ in range(5)}
    assert len(ids) == 1  # the same server session, lent again each time
    assert pool.get_stats()["borrowed"] == 0
    assert pool.get_stats()["connections_made"] == made + (0 if made else 1)
    status, body = request("/add?text=web")
    assert status == 200 and _rows(django_db, f"WHERE id = {int(body)}") == 1


def test_failed_and_dirty_requests_leave_nothing(django_db: str) -> None:
    before = _rows(django_db)
    assert request("/fail")[0] == 500
    assert request("/dirty") == (200, "left open")
    assert _pool().get_stats()["borrowed"] == 0
    assert request("/count") == (200, str(before))  # the next request sees neither row
    assert _rows(django_db) == before


def test_warm_request_costs_only_its_query(django_db: str) -> None:
    request("/conn?db=single")  # first use: the alias reads the server's settings once
    pool = _pool("single")
    assert counted(pool, lambda: request("/conn?db=single"))["questions"] == 1
    assert pool.get_stats()["rollbacks_on_return"] == 0


def test_session_settings_once_per_connection_and_after_resets(django_db: str) -> None:
    # Django's default isolation level for MySQL is READ COMMITTED (the server's is REPEATABLE READ).
    assert [request("/isolation")[1] for _ in range(3)] == ["READ-COMMITTED 0"] * 3
    assert [request("/isolation?db=resetting")[1] for _ in range(3)] == ["READ-COMMITTED 0"] * 3
    assert _pool("resetting").get_stats()["session_resets"] >= 2


def test_threads_serving_requests(django_db: str) -> None:
    before = _rows(django_db)
    errors: list[BaseException] = []

    def serve(worker: int) -> None:
        try:
            for i in range(10):
                status, _ = request(f"/add?text=t{worker}-{i}")
                assert status == 200
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=serve, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and not any(t.is_alive() for t in threads)
    assert _rows(django_db) == before + 60
    stats = _pool().get_stats()
    assert stats["borrowed"] == 0 and stats["open"] <= 4  # six threads shared maxsize=4


def test_conn_max_age_keeps_and_health_check_replaces(django_db: str) -> None:
    from django.db import connections

    pool = _pool("persistent") if request("/conn?db=persistent") else None
    assert pool is not None
    first = request("/conn?db=persistent")[1]
    assert request("/conn?db=persistent")[1] == first  # kept by Django across requests
    assert pool.get_stats()["borrowed"] == 1  # ...so it keeps its pool slot too
    admin = raw_connect()
    try:
        kill_sessions(lambda sql: query(admin, sql), {int(first)})
    finally:
        admin.close()
    status, second = request("/conn?db=persistent")  # the health check finds it dead
    assert status == 200 and second != first
    assert pool.get_stats()["borrowed"] == 1
    connections["persistent"].close()
    assert pool.get_stats()["borrowed"] == 0


def test_pool_exhausted_request_fails_then_recovers(django_db: str) -> None:
    pool = _pool("single")
    held = pool.get_conn()
    try:
        assert request("/count?db=single")[0] == 500  # PoolTimeout after the alias's 0.5 s
    finally:
        held.close()
    assert pool.get_stats()["borrow_timeouts"] >= 1
    assert request("/count?db=single")[0] == 200
    assert pool.get_stats()["borrowed"] == 0


def test_bad_pool_option_is_a_configuration_error(django_db: str) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from pymysqlpool.django.base import _pool_options

    assert _pool_options(True) == {} and _pool_options({"maxsize": 3}) == {"maxsize": 3}
    with pytest.raises(ImproperlyConfigured, match="OPTIONS"):
        _pool_options(5)


def test_is_usable_false_after_the_socket_closed(django_db: str) -> None:
    """Django's own backends test: is_usable() after ``_close()`` answers False, it does not raise."""
    from django.db import connection

    with connection.cursor():
        pass
    connection._close()  # gives the connection back: the proxy Django holds is dead now
    try:
        assert connection.is_usable() is False
    finally:
        connection.close()


def test_query_after_close_inside_atomic_is_a_django_error(django_db: str) -> None:
    """As with the stock backend: the closed connection raises a django.db.Error
    subclass inside atomic(), and the next block works again."""
    from django.db import Error, close_old_connections, connection, transaction
    from notes.models import Note

    before = _rows(django_db)
    with transaction.atomic():
        Note.objects.create(text="lost")
        connection.close()
        with pytest.raises(Error):
            Note.objects.create(text="refused")
    assert Note.objects.filter(text__in=["lost", "refused"]).count() == 0
    close_old_connections()
    assert _rows(django_db) == before
    assert _pool().get_stats()["borrowed"] == 0
