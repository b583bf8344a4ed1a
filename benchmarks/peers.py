"""The pools under test, each behind the same small :class:`Handle` interface.

Every subject is built lazily by a factory so that one missing peer only turns
its own rows into "n/a". Borrow and release are stored as direct callables
(bound or unbound methods, no wrapper lambdas) so the harness adds the same
tiny call cost to every pool.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import importlib.util
import logging
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pymysql

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO_ROOT / ".bench-cache"
OLD_NAME = "pymysqlpool_050"
OLD_REQUIREMENT = "pymysql-pool==0.5.0"


@dataclass
class Handle:
    """A live pool as the scenarios see it."""

    borrow: Callable[[], Any]
    release: Callable[[Any], None]
    close: Callable[[], None]
    # When set, cycles use ``with ctx() as conn`` instead of borrow/release.
    ctx: Callable[[], contextlib.AbstractContextManager[Any]] | None = None
    # Raw PyMySQL only: the connection itself, so query loops skip the no-op calls.
    direct: Any = None
    # Borrowed object -> the PyMySQL connection (server session) under it.
    session: Callable[[Any], Any] = lambda conn: conn
    # The pool's own counters, where it keeps any (ours: get_stats()).
    stats: Callable[[], dict[str, Any]] | None = None


# factory(pymysql_kwargs, maxsize) -> Handle with `maxsize` connections open and idle
Factory = Callable[[dict[str, Any], int], Handle]


@dataclass(frozen=True)
class Subject:
    key: str
    label: str
    version: str
    factory: Factory | None
    missing: str | None = None  # why it is n/a
    ours: bool = False
    is_pool: bool = True  # False for raw PyMySQL, the floor
    resets: bool = False  # sends a reset statement on every return

    @property
    def available(self) -> bool:
        return self.factory is not None


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def prime(handle: Handle, maxsize: int) -> None:
    """Borrow `maxsize` connections at once, then return them all.

    Pools that connect lazily (SQLAlchemy) then hold their full complement, so
    no scenario pays or counts a connect inside its measured window.
    """
    held = [handle.borrow() for _ in range(maxsize)]
    for conn in held:
        handle.release(conn)


# --- raw PyMySQL: the floor ---------------------------------------------------


def _raw_factory(kwargs: dict[str, Any], maxsize: int) -> Handle:
    conn = pymysql.connect(**kwargs)

    def borrow() -> Any:
        return conn

    def release(_conn: Any) -> None:
        return None

    return Handle(borrow=borrow, release=release, close=conn.close, direct=conn)


# --- pymysql-pool 0.5.0 (same module name as ours, so loaded under another one) -----


def _find_wheel(cache_dir: Path) -> Path | None:
    found = sorted(cache_dir.glob("pymysql_pool-0.5.0-*.whl"))
    return found[0] if found else None


def load_pymysqlpool_050(cache_dir: Path = DEFAULT_CACHE) -> ModuleType:
    """Load 0.5.0's single-file module from its wheel as ``pymysqlpool_050``.

    Its module name clashes with ours, so it is never installed; the source is
    executed from the wheel under a private name instead. At import it turns
    PyMySQL warnings into errors and adds a StreamHandler to its logger: both
    are undone here so they cannot change how the other subjects behave.
    """
    if OLD_NAME in sys.modules:
        return sys.modules[OLD_NAME]
    wheel = _find_wheel(cache_dir)
    if wheel is None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", OLD_REQUIREMENT, "-d", str(cache_dir)],
            check=True,
            capture_output=True,
            timeout=180,
        )
        wheel = _find_wheel(cache_dir)
        if wheel is None:
            raise FileNotFoundError(f"pip download left no 0.5.0 wheel in {cache_dir}")
    with zipfile.ZipFile(wheel) as zf:
        source = zf.read("pymysqlpool.py").decode("utf-8")
    origin = f"{wheel}!pymysqlpool.py"
    spec = importlib.util.spec_from_loader(OLD_NAME, loader=None, origin=origin)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    logger = logging.getLogger(OLD_NAME)
    handlers_before = list(logger.handlers)
    # catch_warnings() restores warnings.filters on exit, undoing filterwarnings('error').
    with warnings.catch_warnings():
        exec(compile(source, origin, "exec"), module.__dict__)
    for handler in list(logger.handlers):
        if handler not in handlers_before:
            logger.removeHandler(handler)
    sys.modules[OLD_NAME] = module
    return module


def close_050_pool(pool: Any) -> None:
    """0.5.0 has no close(): shut its idle connections with PyMySQL's own close."""
    while pool._pool:
        conn = pool._pool.pop()
        conn._pool = None
        try:
            # The wrapped Connection.close refuses returned connections; bypass it.
            pymysql.connections.Connection.close(conn)
        except Exception:
            conn._force_close()


def _old_factory(module: ModuleType) -> Factory:
    def factory(kwargs: dict[str, Any], maxsize: int) -> Handle:
        pool = module.ConnectionPool(size=maxsize, maxsize=maxsize, pre_create_num=maxsize, **kwargs)
        # retry_num=10 is its hard cap: up to ~1 s of 0.1 s sleeps before it gives up.
        borrow = functools.partial(pool.get_connection, retry_num=10, retry_interval=0.1)
        handle = Handle(
            borrow=borrow,
            release=module.Connection.close,  # close() puts it back in the pool
            close=functools.partial(close_050_pool, pool),
        )
        prime(handle, maxsize)
        return handle

    return factory


# --- DBUtils PooledDB ----------------------------------------------------------


def _dbutils_factory(kwargs: dict[str, Any], maxsize: int) -> Handle:
    from dbutils.pooled_db import PooledDB

    # Defaults kept on purpose: ping=1 (ping on every checkout), reset=True
    # (rollback on every return) - that is how PooledDB is normally run.
    pool = PooledDB(
        creator=pymysql,
        mincached=maxsize,
        maxcached=maxsize,
        maxconnections=maxsize,
        blocking=True,
        **kwargs,
    )
    probe = pool.connection()
    release = type(probe).close
    release(probe)
    handle = Handle(
        borrow=pool.connection,
        release=release,
        close=pool.close,
        session=lambda conn: conn._con._con,  # dedicated wrapper -> SteadyDB -> PyMySQL
    )
    prime(handle, maxsize)
    return handle


# --- SQLAlchemy QueuePool ----------------------------------------------------------


def _sqlalchemy_factory(reset_on_return: str | None) -> Factory:
    def factory(kwargs: dict[str, Any], maxsize: int) -> Handle:
        from sqlalchemy.pool import QueuePool

        def creator() -> Any:
            return pymysql.connect(**kwargs)

        pool = QueuePool(
            creator,
            pool_size=maxsize,
            max_overflow=0,
            timeout=30.0,
            reset_on_return=reset_on_return,
        )
        probe = pool.connect()
        release = type(probe).close
        release(probe)
        handle = Handle(
            borrow=pool.connect,
            release=release,
            close=pool.dispose,
            session=lambda conn: conn.dbapi_connection,
        )
        prime(handle, maxsize)
        return handle

    return factory


# --- this project ----------------------------------------------------------------


def import_ours() -> tuple[ModuleType | None, str | None]:
    """Import this project's package, or say why it cannot be benchmarked yet."""
    try:
        module = importlib.import_module("pymysqlpool")
    except ImportError:
        # A checkout that is not installed yet: try the src layout directly.
        src = REPO_ROOT / "src"
        if not (src / "pymysqlpool" / "__init__.py").exists():
            return None, "pymysqlpool is not importable yet"
        sys.path.insert(0, str(src))
        try:
            module = importlib.import_module("pymysqlpool")
        except Exception as exc:  # a half-written package must not stop the run
            return None, f"import pymysqlpool failed: {exc!r}"
    except Exception as exc:
        return None, f"import pymysqlpool failed: {exc!r}"
    pool_cls = getattr(module, "ConnectionPool", None)
    if pool_cls is None or not hasattr(pool_cls, "get_conn"):
        # Also guards against an installed pymysql-pool 0.5.0 owning the name.
        return None, "pymysqlpool.ConnectionPool with get_conn() not found"
    return module, None


def ours_version(module: ModuleType) -> str:
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version
    for dist in importlib.metadata.packages_distributions().get("pymysqlpool", []):
        return _dist_version(dist)
    return "?"


def make_ours_pool(module: ModuleType, kwargs: dict[str, Any], maxsize: int) -> Any:
    return module.ConnectionPool(
        **kwargs,
        maxsize=maxsize,
        size=maxsize,
        pre_create_num=maxsize,
        timeout=30.0,
    )


def _ours_factory(module: ModuleType, use_ctx: bool) -> Factory:
    def factory(kwargs: dict[str, Any], maxsize: int) -> Handle:
        pool = make_ours_pool(module, kwargs, maxsize)
        handle = Handle(
            borrow=pool.get_conn,
            release=pool.release,
            close=pool.close,
            ctx=pool.connection if use_ctx else None,
            session=lambda conn: conn.raw,
            stats=pool.get_stats,
        )
        prime(handle, maxsize)
        return handle

    return factory


# --- discovery ---------------------------------------------------------------------

RAW = "raw"
OLD = "pymysql-pool"
DBUTILS = "dbutils"
SQLA_ROLLBACK = "sqla-rollback"
SQLA_NONE = "sqla-none"
OURS_PAIR = "ours"
OURS_CTX = "ours-ctx"


def discover(cache_dir: Path = DEFAULT_CACHE) -> list[Subject]:
    """All subjects in table order; those that cannot load carry a reason."""
    subjects = [
        Subject(RAW, "raw PyMySQL (no pool)", _dist_version("PyMySQL"), _raw_factory, is_pool=False),
    ]

    try:
        old = load_pymysqlpool_050(cache_dir)
        subjects.append(Subject(OLD, "pymysql-pool 0.5.0", "0.5.0", _old_factory(old), resets=True))
    except Exception as exc:
        subjects.append(Subject(OLD, "pymysql-pool 0.5.0", NA_VERSION, None, repr(exc)))

    try:
        importlib.import_module("dbutils.pooled_db")
        subjects.append(Subject(DBUTILS, "DBUtils PooledDB", _dist_version("DBUtils"), _dbutils_factory, resets=True))
    except Exception as exc:
        subjects.append(Subject(DBUTILS, "DBUtils PooledDB", NA_VERSION, None, repr(exc)))

    try:
        importlib.import_module("sqlalchemy.pool")
        version = _dist_version("SQLAlchemy")
        subjects.append(
            Subject(
                SQLA_ROLLBACK,
                "SQLAlchemy QueuePool (reset: rollback)",
                version,
                _sqlalchemy_factory("rollback"),
                resets=True,
            )
        )
        subjects.append(Subject(SQLA_NONE, "SQLAlchemy QueuePool (reset: None)", version, _sqlalchemy_factory(None)))
    except Exception as exc:
        for key, label in (
            (SQLA_ROLLBACK, "SQLAlchemy QueuePool (reset: rollback)"),
            (SQLA_NONE, "SQLAlchemy QueuePool (reset: None)"),
        ):
            subjects.append(Subject(key, label, NA_VERSION, None, repr(exc)))

    ours, why = import_ours()
    version = ours_version(ours) if ours is not None else NA_VERSION
    for key, label, use_ctx in (
        (OURS_PAIR, "pymysqlpool get_conn/release", False),
        (OURS_CTX, "pymysqlpool with connection()", True),
    ):
        factory = _ours_factory(ours, use_ctx) if ours is not None else None
        subjects.append(Subject(key, label, version, factory, why, ours=True))
    return subjects


NA_VERSION = "n/a"
