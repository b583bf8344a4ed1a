"""Slot: the pool's record of one open connection."""

from __future__ import annotations

from typing import Any, Callable, List, Optional


class SlotState:
    """Where a slot is. Every change of state happens under the pool lock,
    by the books (:class:`~pymysqlpool._books.Books`), together with the
    counts it implies, so an interrupted operation can always tell what it
    still owns. Values of their own: see ``_plans.Op``."""

    NEW = 20  # opened, not yet counted by the pool
    IDLE = 21  # in the idle deque
    OUT = 22  # granted to a borrower (being validated) or lent
    HELD = 23  # the pool is pinging, cleaning or closing it
    GONE = 24  # closed and no longer counted
    # Closed by the pool in the middle of an answer: its session may still run
    # on the server, so the slot stays counted (open, held) until a KILL proved
    # the session gone or the kill's bound passed (see PoolCore._killer_plan).
    KILLING = 25


# Module constants, read as globals on the hot paths (see _plans.Op).
NEW, IDLE, OUT, HELD, GONE, KILLING = (
    SlotState.NEW,
    SlotState.IDLE,
    SlotState.OUT,
    SlotState.HELD,
    SlotState.GONE,
    SlotState.KILLING,
)

_INF = float("inf")


class Slot:
    """One server connection and the facts the pool keeps about it.

    Times are ``time.monotonic()`` seconds.
    """

    __slots__ = (
        "announced",
        "borrow_stack",
        "borrowed_at",
        "created",
        "expires",
        "generation",
        "keepalive",
        "kill_by",
        "last_used",
        "leak_reported",
        "lend_as",
        "probe",
        "proxied",
        "raw",
        "retire",
        "session",
        "state",
    )

    def __init__(self, raw: Any, created: float, expires: float, generation: int, keepalive: float) -> None:
        self.raw = raw
        self.created = created
        # on_connect fired for it, so on_close will: False only for a dial cut
        # in its set-up, killed in its right's place (see keep_unfinished).
        self.announced = True
        # Already jittered: connections made together must not expire together.
        self.expires = expires
        self.last_used = created
        self.generation = generation
        self.borrowed_at = 0.0
        self.borrow_stack: Optional[str] = None
        self.leak_reported = False
        # Ping when idle this long (0: never); below the server's wait_timeout.
        self.keepalive = keepalive
        # poll(0) of the socket: non-empty means the server hung up on it.
        self.probe: Optional[Callable[[int], List[Any]]] = None
        self.state = NEW
        # The proxy class a borrow of it gets (set when the pool books it):
        # chosen once for the driver connection's class, see Borrowed.proxy_for.
        self.lend_as: Any = None
        # A proxy holds it (set by the proxy, cleared on return): a slot lent
        # with no proxy was orphaned by an interrupt (see _reconcile_plan).
        # A proxy that dies reports itself (__del__), so no reference is kept.
        self.proxied = False
        # Set once the connection must not be reused (drain, resize, wrong
        # node): the stats counter it is closed under.
        self.retire: Optional[str] = None
        # The server's id of the session (0: unknown), for a KILL.
        self.session = 0
        # KILLING: the moment the slot is freed if the kill proved nothing.
        self.kill_by = 0.0

    def doom(self, reason: str) -> None:
        """Close this connection at its next return or borrow instead of reusing it.

        Setting ``expires`` to the past sends it down the slow paths that
        already exist for an expired connection, so the fast paths pay nothing.
        """
        if self.retire is None:
            self.retire = reason
        self.expires = -_INF
