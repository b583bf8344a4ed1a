"""What the core asks of a driver: the :class:`Driver` protocol.

One job: name, once, every non-blocking question and act the sans-I/O core
(``_core.PoolCore``) puts to a driver about one of its connections. A shell
gives the core a driver module (``_driver`` for threads, ``_adriver`` for
asyncio) as ``PoolCore._drv``; mypy checks that each module satisfies this
protocol, and a fast test that each defines every member. Nothing here does
I/O: whatever waits on the network is a request the shell performs (DIAL,
CHECK, PING, CLOSE, RESET, KILL), not a driver call of the core's.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol, runtime_checkable

__all__ = ["Driver"]


@runtime_checkable
class Driver(Protocol):
    """The non-blocking functions of a driver module that the core calls.

    ``raw`` is one driver connection; none of these waits or raises unless
    said so."""

    # -- the state of a returned connection (no round trip) --------------------

    def is_broken(self, raw: Any, /) -> bool:
        """The driver dropped its socket: nothing to reuse."""
        ...

    def needs_reset(self, raw: Any, autocommit: bool, /) -> bool:
        """It cannot be parked as it is (a transaction, autocommit changed, an
        unread result, broken): the return resets or closes it."""
        ...

    def mid_answer(self, raw: Any, /) -> bool:
        """The borrower left in the middle of an answer: never reused."""
        ...

    def results_pending(self, raw: Any, /) -> bool:
        """Further result sets are still to be read (expected bytes on the socket)."""
        ...

    def left_running(self, raw: Any, /) -> bool:
        """Its statement may still run on the server: the session is killed."""
        ...

    # -- facts kept on the slot ---------------------------------------------------

    def make_probe(self, raw: Any, /) -> Optional[Callable[[int], Any]]:
        """A zero-timeout hang-up check (non-empty: the server hung up); None if none."""
        ...

    def session_id(self, raw: Any, /) -> int:
        """The server's id of the session, for a KILL; 0 if unknown."""
        ...

    def watch_wrong_node(self, raw: Any, hook: Callable[[], Any], /) -> None:
        """Call ``hook`` when the connection sees a wrong-node error."""
        ...

    # -- ending a connection without waiting ----------------------------------------

    def force_close(self, raw: Any, /) -> None:
        """Close the socket without a word to the server; never raises."""
        ...

    def interrupt(self, raw: Any, /) -> None:
        """Shut the socket down under a borrower still using it; never raises."""
        ...

    def abandon(self, raw: Any, /) -> None:
        """Forget a connection inherited through fork without touching the socket."""
        ...

    # -- errors ------------------------------------------------------------------------

    def is_fatal_connect_error(self, exc: BaseException, /) -> bool:
        """Retrying the connect cannot help (access denied, unknown database...)."""
        ...

    def kill_refused(self, exc: BaseException, /) -> bool:
        """The server refused the KILL itself: asking again cannot help."""
        ...

    def too_many_sessions(self, exc: BaseException, /) -> bool:
        """The server refused a connection for too many sessions (1040, 1226)."""
        ...

    def unfinished(self, exc: BaseException, /) -> Any:
        """The connection an interrupt ``exc`` cut in its connect once the server
        had made its session (closed, to be killed), taken once; None if none."""
        ...
