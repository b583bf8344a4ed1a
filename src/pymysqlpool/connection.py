"""PooledConnection: the proxy a borrower holds.

A new proxy is made for every borrow, so a proxy that was given back cannot
reach the connection again even after the pool lent it to someone else.
Everything PyMySQL's connection offers is forwarded; ``close()`` and
``with conn:`` give the connection back instead of closing it (as in 0.5.0).
"""

from __future__ import annotations

from types import FunctionType, TracebackType
from typing import TYPE_CHECKING, Any, Callable, Dict, FrozenSet, Iterable, Optional, Set, Type

from . import _driver
from ._driver import CURSOR_MAP
from .cursors import BOUND_CURSORS
from .errors import ConnectionReturnedError, ReturnConnectionToPoolError

if TYPE_CHECKING:
    from ._slot import Slot
    from .pool import ConnectionPool

__all__ = ["PROXY_TYPES", "Borrowed", "PooledConnection", "forward_all", "lend"]

THREAD_POOL_IN_ASYNC_WITH = (
    "ConnectionPool is the thread pool: use 'with', not 'async with'"
    " (for asyncio, pymysqlpool.AsyncConnectionPool takes 'async with')"
)


# The bound class cursor() makes for PyMySQL's cursor classes and for ours:
# one lookup.
_BOUND: Dict[Any, Any] = {**CURSOR_MAP, **{cls: cls for cls in BOUND_CURSORS}}


def lend(pool: Any, slot: Slot) -> Any:
    """A new proxy for ``slot``, lent by ``pool``, of the class chosen for
    the slot's connection when it was booked (``slot.lend_as``).

    The class has no ``__init__`` (a Python one cost a third of a borrow:
    see Borrowed.__init_subclass__), so the call runs C code only, ~300
    instructions fewer than ``object.__new__(cls)``. An interrupt after it
    leaves a proxy without ``_slot``, which ``__del__`` ignores: the borrow
    gives the slot up. (PoolCore._get_conn writes this out.)"""
    conn = slot.lend_as()
    conn._pool = pool
    conn._slot = slot
    conn._raw = slot.raw
    # Lets the pool tell a lent slot from one an interrupt orphaned.
    slot.proxied = True
    return conn


_HOOKS = frozenset({"__getattr__", "__getattribute__"})  # a class whose names cannot be listed


def _names_of(kind: type) -> FrozenSet[str]:
    """What ``kind``'s class hierarchy defines (object's excepted), dunders
    only where they change attribute lookup."""
    return frozenset(
        name for klass in kind.__mro__[:-1] for name in vars(klass) if not name.startswith("__") or name in _HOOKS
    )


# Every proxy class (each subclass of Borrowed): what a pool takes back.
PROXY_TYPES: Set[type] = set()


class Borrowed:
    """What both pools' proxies share: one borrow of one slot, dead once given
    back, and reporting itself to the pool if dropped while borrowed."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # lend() calls the class with no argument and sets the slots itself.
        if "__init__" in vars(cls) or "__new__" in vars(cls):
            raise TypeError(f"{cls.__name__}: a proxy class takes no __init__ or __new__ (see lend)")
        PROXY_TYPES.add(cls)

    __slots__ = ("__weakref__", "_pool", "_raw", "_slot")
    _pool: Any
    _slot: Optional[Slot]
    _raw: Any
    # Read-only views of _raw and _pool (aliases set below the classes): the
    # driver's connection, None once given back; the pool that lent it.
    lent_raw: Any
    lender: object
    returned_error: Callable[[Borrowed], ConnectionReturnedError]
    # Set by forward_all: the driver connection classes whose every attribute
    # this class forwards by a member of its own, and the subclass that lends
    # a connection of any other class.
    _forwards: FrozenSet[type] = frozenset()
    _any_class: type
    _members: FrozenSet[str] = frozenset()  # every name the class defines or inherits

    @classmethod
    def proxy_for(cls, raw: Any) -> type:
        """The proxy class that lends ``raw``: ``cls`` for the driver's own
        connections and for another class whose instances can never have a
        name ``cls`` lacks (slotted, no ``__dict__``, every name it defines
        covered), else its subclass that forwards the rest through
        ``__getattr__``. An instance with a ``__dict__`` may gain attributes
        after it was booked (set by its own methods, or by a ``configure``):
        judged by the names it had then, its proxy would raise
        AttributeError for the new ones.

        Not ``__getattr__`` on every proxy: on CPython 3.11 a class that
        defines it has none of its attribute reads specialized, and the pool
        and the cursors read the proxy on every borrow, query and return
        (~1,300 instructions per borrow + return, ~3,600 per query cycle)."""
        kind = type(raw)
        if kind in cls._forwards:
            return cls
        names = _names_of(kind)
        if not hasattr(raw, "__dict__") and cls._members.issuperset(names) and not names & _HOOKS:
            return cls
        return cls._any_class

    if TYPE_CHECKING:  # the driver's attributes, as members made by forward_all or through __getattr__

        def __getattr__(self, name: str) -> Any: ...

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

    def __repr__(self) -> str:
        state = "returned" if self._raw is None else "borrowed"
        return f"<{type(self).__name__} {state} from pool {self._pool.name!r}>"


def _forward_missing(self: Borrowed, name: str) -> Any:
    # Only called for names the proxy does not define: forward to the driver.
    raw = object.__getattribute__(self, "_raw")
    if raw is None:
        raise object.__getattribute__(self, "_returned_error")()
    return getattr(raw, name)


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
            slot = self._slot
            if slot is None:  # given back meanwhile (by another thread)
                raise self._returned_error() from None
            try:
                self._pool.replace_session(slot)
            finally:
                if self._slot is slot:
                    # The new session; or, if the dial failed, the dead one;
                    # or one cut in its set-up, put in its place to be killed.
                    self._raw = slot.raw

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


# The driver's own attributes that the proxy does not define itself are
# members of the proxy class, made below (a method per method, a read-only
# property per other name), rather than reached through __getattr__ (see
# Borrowed.proxy_for).
_METHOD = """
def {name}(self, *args, **kwargs):
    raw = self._raw
    if raw is None:
        raise self._returned_error()
    return raw.{name}(*args, **kwargs)
"""

_VALUE = """
def {name}(self):
    raw = self._raw
    if raw is None:
        raise self._returned_error()
    return raw.{name}
"""


def forward_all(cls: Type[Borrowed], drivers: Iterable[type], instance_names: Iterable[str]) -> None:
    """Make ``cls`` forward every attribute of the driver connection classes
    ``drivers`` (their class members and ``instance_names``, what each
    instance sets) that it does not define itself, and make its subclass
    for connections of other classes (``cls._any_class``)."""
    drivers = tuple(drivers)
    found: Dict[str, Any] = {name: None for name in instance_names}
    for driver in drivers:
        for klass in reversed(driver.__mro__[:-1]):
            found.update(vars(klass))
    for name, value in sorted(found.items()):
        if name.startswith("__") or hasattr(cls, name):
            continue
        if not name.isidentifier():
            raise ValueError(f"not an attribute name: {name!r}")
        is_method = isinstance(value, (FunctionType, classmethod, staticmethod))
        namespace: Dict[str, Any] = {}
        exec((_METHOD if is_method else _VALUE).format(name=name), namespace)  # a fixed template, checked names
        function = namespace[name]
        function.__qualname__ = f"{cls.__name__}.{name}"
        function.__module__ = cls.__module__
        function.__doc__ = getattr(value, "__doc__", None) if is_method else None
        setattr(cls, name, function if is_method else property(function))
    cls._forwards = frozenset(drivers)
    cls._members = frozenset(name for klass in cls.__mro__ for name in vars(klass))
    # Named as cls: reprs and messages read the same whichever lends.
    cls._any_class = type(
        cls.__name__,
        (cls,),
        {
            "__slots__": (),
            "__getattr__": _forward_missing,
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
        },
    )


forward_all(PooledConnection, (_driver.Connection, _driver.WriteTrackingConnection), _driver.INSTANCE_ATTRIBUTES)

# -- Public seam: a proxy's state for code that wraps a pool's return --------
# (the cluster's node pools look at every return). Aliases of the proxy's own
# slots: read as fast as the slots themselves. A property would cost a Python
# frame (~2,000 instructions per return: the class defines __getattr__, so no
# read on it is specialized), a reader function a call (~225).
Borrowed.lent_raw = Borrowed.__dict__["_raw"]
Borrowed.lender = Borrowed.__dict__["_pool"]
# The error a use after the return raises, for the cursors bound to a borrow.
Borrowed.returned_error = Borrowed._returned_error
