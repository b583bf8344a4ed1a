"""Cursors with the 0.5.0 helpers ``db_query`` and ``db_modify``.

They are plain PyMySQL cursors with two convenience methods, so code that
checks ``isinstance(cur, pymysql.cursors.Cursor)`` keeps working.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Union

import pymysql.cursors
import pymysql.err

__all__ = ["Cursor", "DictCursor", "SSCursor", "SSDictCursor"]

Args = Optional[Union[Tuple[Any, ...], Dict[str, Any], Any]]


class BoundToBorrow:
    """Ties a cursor to the borrow that made it.

    The cursor talks to the PyMySQL connection directly (no proxy hop on the
    query path), but every command it sends first checks that its borrow is
    still open: a cursor kept after its connection went back to the pool fails
    with ``ConnectionReturnedError`` instead of running in the next
    borrower's session. Closing such a cursor just lets go: the pool already
    drained the connection.
    """

    connection: Any
    _borrow: Any = None  # the PooledConnection; None when made on a bare connection

    def _get_db(self) -> Any:
        borrow = self._borrow
        if borrow is not None and borrow.lent_raw is None:
            raise borrow.returned_error()
        connection = self.connection
        if not connection:
            raise pymysql.err.ProgrammingError("Cursor closed")
        return connection

    def close(self) -> None:
        borrow = self._borrow
        if borrow is not None and borrow.lent_raw is None:
            self.connection = None
            return
        super().close()  # type: ignore[misc]


class Cursor(BoundToBorrow, pymysql.cursors.Cursor):
    """A PyMySQL cursor with the 0.5.0 helpers."""

    # execute() and close() run once per statement: each asks nextset()
    # only when a further result set is there (PyMySQL's asks every time),
    # which spares three frames (nextset, _nextset, _get_db: ~700
    # instructions) per call. What those frames check first -- the borrow
    # still open, the cursor not closed -- _query's own _get_db checks
    # before anything is sent.

    def execute(self, query: Any, args: Args = None) -> int:
        # A previous statement's further sets: read them first. (_result,
        # _mogrify and _query are PyMySQL's, not in its stubs.)
        result = self._result  # type: ignore[attr-defined]
        if result is not None and result.has_next:
            while self.nextset():
                pass
        if args is not None:
            query = self._mogrify(query, args)  # type: ignore[attr-defined]
        rows: int = self._query(query)  # type: ignore[attr-defined]
        self._executed = query
        return rows

    def close(self) -> None:
        connection = self.connection
        if connection is None:
            return
        borrow = self._borrow
        try:
            if borrow is None or borrow.lent_raw is not None:
                result = self._result  # type: ignore[attr-defined]
                if result is not None and result.has_next:  # else nextset() finds none
                    while self.nextset():
                        pass
        finally:
            self.connection = None

    def db_query(self, query: str, args: Args = ()) -> Any:
        """Execute ``query`` and return every row (``fetchall``): always a sequence."""
        self.execute(query, args)
        return self.fetchall()

    def db_modify(self, query: str, args: Args = (), exec_many: bool = False) -> Dict[str, Any]:
        """Execute a statement (``executemany`` if ``exec_many``).

        Returns ``{'rowcount': ..., 'lastrowid': ...}`` as 0.5.0 did.
        """
        if exec_many:
            self.executemany(query, args or ())  # None: nothing to run, as PyMySQL does for ()
        else:
            self.execute(query, args)
        return {"rowcount": self.rowcount, "lastrowid": self.lastrowid}


class DictCursor(pymysql.cursors.DictCursorMixin, Cursor):  # type: ignore[misc]
    """A cursor returning rows as dictionaries, with the 0.5.0 helpers."""


class SSCursor(BoundToBorrow, pymysql.cursors.SSCursor):
    """PyMySQL's unbuffered cursor, safe to close after the connection went back."""

    def __del__(self) -> None:  # PyMySQL binds __del__ to its own close
        self.close()


class SSDictCursor(BoundToBorrow, pymysql.cursors.SSDictCursor):  # type: ignore[misc]
    """PyMySQL's unbuffered dict cursor, safe to close after the connection went back."""

    def __del__(self) -> None:  # PyMySQL binds __del__ to its own close
        self.close()


# Cursor classes that check their borrow themselves (see BoundToBorrow).
BOUND_CURSORS = frozenset({Cursor, DictCursor, SSCursor, SSDictCursor})
