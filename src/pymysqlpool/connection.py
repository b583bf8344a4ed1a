"""PooledConnection: the proxy a borrower holds.

A new proxy is made for every borrow, so a proxy that was given back cannot
reach the connection again even after the pool lent it to someone else.
Everything PyMySQL's connection offers is forwarded; ``close()`` and
``with conn:`` give the connection back instead of closing it (as in 0.5.0).
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Dict, Iterable, Optional, Set, Type, TypeVar

import pymysql.connections

from ._driver import CURSOR_MAP
from .cursors import BOUND_CURSORS
from .errors import ConnectionReturnedError, ReturnConnectionToPoolError

if TYPE_CHECKING:
    from ._slot import Slot
    from .pool import ConnectionPool

__all__ = ["PROXY_TYPES", "Borrowed", "PooledConnection", "lend"]

THREAD_POOL_IN_ASYNC_WITH = (
    "ConnectionPool is the thread pool: use 'with', not 'async with'"
    " (for asyncio, pymysqlpool.AsyncConnectionPool takes 'async with')"
)


_new = object.__new__
# The bound class cursor() makes for PyMySQL's cursor classes and for ours:
# one lookup.
_BOUND: Dict[Any, Any] = {**CURSOR_MAP, **{cls: cls for cls in BOUND_CURSORS}}
B = TypeVar("B", bound="Borrowed")


def lend(cls: Type[B], pool: Any, slot: Slot) -> B:
    """A new proxy of class ``cls`` for ``slot``, lent by ``pool``.

    Built without a Python ``__init__`` (a third of a borrow's cost went to
    the type call's machinery). An interrupt after ``_new`` leaves a proxy
    without ``_slot``, which ``__del__`` ignores: the borrow gives the slot up."""
    conn = _new(cls)
    conn._pool = pool
    conn._slot = slot
    conn._raw = slot.raw
    # Lets the pool tell a lent slot from one an interrupt orphaned.
    slot.proxied = True
    return conn


# Every proxy class (each subclass of Borrowed): what a pool takes back.
PROXY_TYPES: Set[type] = set()


class Borrowed:
    """What both pools' proxies share: one borrow of one slot, dead once given
    back, and reporting itself to the pool if dropped while borrowed."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        PROXY_TYPES.add(cls)

    __slots__ = ("__weakref__", "_pool", "_raw", "_slot")
    _pool: Any
    _slot: Optional[Slot]
    _raw: Any
    # Read-only views of _raw and _pool (aliases set below the classes): the
    # driver's connection, None once given back; the pool that lent it.
    lent_raw: Any
    lender: object

    def _returned_error(self) -> ConnectionReturnedError:
        return ConnectionReturnedError(
            f"this connection was already returned to pool {self._pool.name!r}; borrow a new one"
        )

    @classmethod
    def refusal(cls, pool: Any, conn: Any) -> ReturnConnectionToPoolError:
        """Why ``pool``, which lends ``cls``, refuses to take ``conn`` back."""
        if not isinstance(conn, cls):
            return ReturnConnectionToPoolError(
                f"pool {pool.name!r} can only take back the {cls.__name__} it lent, not {type(conn).__name__}"
            )
        return ReturnConnectionToPoolError(
            f"this connection belongs to pool {conn._pool.name!r}, not to pool {pool.name!r}"
        )

    def _returned_twice(self) -> ReturnConnectionToPoolError:
        return ReturnConnectionToPoolError(f"this connection was already returned to pool {self._pool.name!r}")

    @property
    def raw(self) -> Any:
        """The driver's connection (do not close it or keep it)."""
        raw = self._raw
        if raw is None:
            raise self._returned_error()
        return raw

    @property
    def returned(self) -> bool:
        """True once the connection was given back."""
        return self._raw is None

    def __del__(self) -> None:
        # Dropped while still borrowed: the pool reclaims the slot later,
        # never from inside the garbage collector.
        try:
            slot = self._slot
        except AttributeError:  # lend() was interrupted: the borrow gave the slot up itself
            return
        if slot is not None:
            self._pool._leaked(slot)

    def __getattr__(self, name: str) -> Any:
        # Only called for names not defined here: forward to the driver.
        raw = object.__getattribute__(self, "_raw")
        if raw is None:
            raise object.__getattribute__(self, "_returned_error")()
        return getattr(raw, name)

    def __repr__(self) -> str:
        state = "returned" if self._raw is None else "borrowed"
        return f"<{type(self).__name__} {state} from pool {self._pool.name!r}>"


class PooledConnection(Borrowed):
    """A borrowed connection. Give it back with ``pool.release(conn)``,
    ``conn.close()`` or by leaving ``with conn:``."""

    __slots__ = ()
    _pool: ConnectionPool

    @property
    def pool(self) -> ConnectionPool:
        return self._pool

    def close(self) -> None:
        """Give the connection back to its pool (the socket stays open)."""
        self._pool.release(self)

    def __enter__(self) -> PooledConnection:
        return self

    async def __aenter__(self) -> None:
        # ``async with pool.connection()`` borrowed already: give it back first.
        self._pool.release(self)
        raise TypeError(THREAD_POOL_IN_ASYNC_WITH)

    async def __aexit__(self, *exc: Any) -> None:  # pragma: no cover - __aenter__ raised
        pass

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self._raw is not None:
            self._pool.release(self, exc is not None)

    # -- forwarding ---------------------------------------------------------

    def cursor(self, cursor: Optional[Type[Any]] = None) -> Any:
        """A cursor tied to this borrow: once the connection is given back,
        the cursor fails with ``ConnectionReturnedError`` instead of running
        statements in the next borrower's session."""
        raw = self._raw
        if raw is None:
            raise self._returned_error()
        cls = raw.cursorclass if cursor is None else cursor
        bound = _BOUND.get(cls)
        if bound is None:
            return cls(self)  # another cursor class: it reaches PyMySQL through the proxy
        cur = bound(raw)
        cur._borrow = self
        return cur

    def commit(self) -> None:
        self.raw.commit()

    def rollback(self) -> None:
        self.raw.rollback()

    def begin(self) -> None:
        self.raw.begin()

    def autocommit(self, value: bool) -> None:
        self.raw.autocommit(value)

    def get_autocommit(self) -> bool:
        return bool(self.raw.get_autocommit())

    def select_db(self, db: str) -> None:
        self.raw.select_db(db)

    def ping(self, reconnect: bool = True) -> None:
        """Check the server answers. With ``reconnect=True`` (0.5.0's default)
        a dead socket is replaced in place by a new session; with False the
        error is raised."""
        raw = self.raw
        if not reconnect:
            raw.ping(reconnect=False)
            return
        try:
            raw.ping(reconnect=False)
        except Exception:
            self._pool._reconnect_in_place(self)

    # What PyMySQL's cursors use on every execute, spelled out so the cursor
    # path does not pay for a failed lookup plus __getattr__ each time.
    def query(self, sql: Any, unbuffered: bool = False) -> Any:
        raw = self._raw
        if raw is None:
            raise self._returned_error()
        return raw.query(sql, unbuffered)

    @property
    def _result(self) -> Any:
        raw = self._raw
        if raw is None:
            raise self._returned_error()
        return raw._result

    @property
    def encoding(self) -> str:
        return str(self.raw.encoding)

    @property
    def open(self) -> bool:
        return bool(self.raw.open)


# PyMySQL's public methods the proxy does not define itself, forwarded by
# methods made below rather than through __getattr__ (which runs only after
# a failed lookup has raised and caught an AttributeError). Other names --
# data attributes, the rest -- still go through __getattr__.
FORWARDED = (
    "affected_rows",
    "character_set_name",
    "connect",
    "escape",
    "get_host_info",
    "get_proto_info",
    "get_server_info",
    "insert_id",
    "kill",
    "literal",
    "next_result",
    "set_character_set",
    "set_charset",
    "show_warnings",
    "thread_id",
    "write_packet",
)

_FORWARDER = """
def {name}(self, *args, **kwargs):
    raw = self._raw
    if raw is None:
        raise self._returned_error()
    return raw.{name}(*args, **kwargs)
"""


def forward(cls: type, names: Iterable[str], driver: type) -> None:
    """Give ``cls`` one method per name in ``names``, each calling the
    driver connection's method of that name (documented as ``driver``'s)."""
    for name in names:
        if not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"not a public method name: {name!r}")
        namespace: Dict[str, Any] = {}
        exec(_FORWARDER.format(name=name), namespace)  # a fixed template, checked names
        method = namespace[name]
        method.__qualname__ = f"{cls.__name__}.{name}"
        method.__module__ = cls.__module__
        method.__doc__ = getattr(driver, name).__doc__
        setattr(cls, name, method)


forward(PooledConnection, FORWARDED, pymysql.connections.Connection)

# -- Public seam: a proxy's state for code that wraps a pool's return --------
# (the cluster's node pools look at every return). Aliases of the proxy's own
# slots: read as fast as the slots themselves. A property would cost a Python
# frame (~2,000 instructions per return: the class defines __getattr__, so no
# read on it is specialized), a reader function a call (~225).
Borrowed.lent_raw = Borrowed.__dict__["_raw"]
Borrowed.lender = Borrowed.__dict__["_pool"]
