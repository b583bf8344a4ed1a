"""Cursors with the 0.5.0 helpers ``db_query`` and ``db_modify``.

They are plain PyMySQL cursors with two convenience methods, so code that
checks ``isinstance(cur, pymysql.cursors.Cursor)`` keeps working.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Union

import pymysql.cursors

__all__ = ["Cursor", "DictCursor", "SSCursor", "SSDictCursor"]

Args = Optional[Union[Tuple[Any, ...], Dict[str, Any], Any]]


class _LetGoWhenReturned:
    """A cursor closed (or collected) after its connection went back to the
    pool has nothing left to drain, the pool did it: just let go instead of
    raising ``ConnectionReturnedError`` from ``close()``."""

    connection: Any

    def close(self) -> None:
        if getattr(getattr(self, "connection", None), "returned", False):
            self.connection = None
            return
        super().close()  # type: ignore[misc]


class Cursor(_LetGoWhenReturned, pymysql.cursors.Cursor):  # type: ignore[misc]
    """A PyMySQL cursor with the 0.5.0 helpers."""

    def db_query(self, query: str, args: Args = ()) -> Any:
        """Execute ``query`` and return every row (``fetchall``): always a sequence."""
        self.execute(query, args)
        return self.fetchall()

    def db_modify(self, query: str, args: Args = (), exec_many: bool = False) -> Dict[str, Any]:
        """Execute a statement (``executemany`` if ``exec_many``).

        Returns ``{'rowcount': ..., 'lastrowid': ...}`` as 0.5.0 did.
        """
        if exec_many:
            self.executemany(query, args)
        else:
            self.execute(query, args)
        return {"rowcount": self.rowcount, "lastrowid": self.lastrowid}


class DictCursor(pymysql.cursors.DictCursorMixin, Cursor):  # type: ignore[misc]
    """A cursor returning rows as dictionaries, with the 0.5.0 helpers."""


class SSCursor(_LetGoWhenReturned, pymysql.cursors.SSCursor):  # type: ignore[misc]
    """PyMySQL's unbuffered cursor, safe to close after the connection went back."""

    def __del__(self) -> None:  # PyMySQL binds __del__ to its own close
        self.close()


class SSDictCursor(_LetGoWhenReturned, pymysql.cursors.SSDictCursor):  # type: ignore[misc]
    """PyMySQL's unbuffered dict cursor, safe to close after the connection went back."""

    def __del__(self) -> None:  # PyMySQL binds __del__ to its own close
        self.close()
