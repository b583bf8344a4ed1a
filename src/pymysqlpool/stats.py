"""Counters and the stats snapshot.

Counters are plain integers changed under the pool lock, so they are exact
under any concurrency. Gauges (sizes, waiting) are computed at snapshot time
and are not reset by ``pop_stats``.
"""

from __future__ import annotations

from typing import Dict, Union

__all__ = ["COUNTERS", "GAUGES", "MAXIMA", "Counters"]

Number = Union[int, float]

# name -> meaning; the docs' stats reference is checked against this table.
COUNTERS: Dict[str, str] = {
    "borrows": "borrows served",
    "borrows_waited": "borrows that had to queue because the pool was at maxsize",
    "borrow_wait_ms": "total time borrows spent queued, in ms",
    "borrow_timeouts": "borrows that gave up after the timeout (PoolTimeout)",
    "borrow_errors": "borrows that failed for another reason (connect error, pool closed)",
    "borrows_rejected": "borrows refused at once because max_waiting borrowers were already queued",
    "returns": "connections given back",
    "uses": "returns whose borrow time is in use_ms (every return: equals returns)",
    "use_ms": "total time connections were borrowed (borrow to return), in ms",
    "use_max_ms": "longest borrow (borrow to return) since the last pop_stats, in ms",
    "rollbacks_on_return": "returns that needed a ROLLBACK (open transaction or autocommit off)",
    "session_resets": "COM_RESET_CONNECTION sent on return (reset_session=True)",
    "connections_made": "server connections opened",
    "connect_errors": "failed connection attempts (not a dial cancelled or interrupted by its borrower)",
    "connect_ms": "total time spent opening connections, in ms",
    "closed_lifetime": "connections retired because they reached con_lifetime",
    "closed_idle": "idle connections beyond size retired after max_idle",
    "closed_broken": "connections found broken on return or at a keep-alive ping",
    "closed_failed_check": "idle connections that failed validation before a borrow (or, asyncio, seen hung up)",
    "closed_unread": "connections returned in the middle of an answer (an interrupted fetch): closed, never reused",
    "closed_on_pool_close": "connections closed by pool.close()",
    "closed_wrong_node": "connections closed on return after the server answered 1290 read-only or 1047",
    "closed_drained": "connections replaced by pool.drain()",
    "closed_resized": "connections closed because pool.resize() lowered maxsize",
    "closed_orphaned": "connections an interrupt left to nobody (no proxy, no step holds them), closed by maintenance",
    "leaks_detected": "borrows held longer than leak_timeout, or dropped without return",
    "leaks_reclaimed": "connections reclaimed because their borrower dropped them",
    "keepalive_pings": "pings sent by the maintenance thread to idle connections",
    "kills": "sessions closed mid-answer that the pool killed on the server (KILL acknowledged, the session gone)",
    "kill_failures": "such kills that proved nothing within their bound (refused, unreachable): slot freed then",
}

_USE_KEYS = ("uses", "use_ms", "use_max_ms")

# Counters that hold a maximum, not a sum: they go down at pop_stats() and are
# no running total (Prometheus exports them as gauges).
MAXIMA = frozenset({"use_max_ms"})

GAUGES: Dict[str, str] = {
    "pool_min": "pre_create_num: connections kept open at all times",
    "pool_size": "size: idle connections never retired for idleness (max_idle applies beyond it)",
    "pool_max": "maxsize: most connections ever open at once",
    "open": "connections open now (idle + borrowed, and those being killed)",
    "idle": "connections ready to lend now",
    "borrowed": "connections lent out now",
    "connecting": "connections being opened now",
    "waiting": "borrowers queued now",
    "killing": "connections closed mid-answer whose session is being killed: still counted in open",
}


# Counters of closed connections, one per reason a connection was closed.
CLOSE_REASONS = (*(name for name in COUNTERS if name.startswith("closed_")), "leaks_reclaimed")


class Counters:
    """Monotonic counters; mutated only with the pool lock held.

    The close counters live in ``closes``, a dict keyed by reason, so that the
    pool adds to the one a caller names with a plain item store (no call an
    interrupt could land after). Use time is kept in seconds and converted in
    snapshot(): one float operation less per return. Every return is
    measured, so uses == returns.
    """

    __slots__ = (
        *(name for name in COUNTERS if name not in CLOSE_REASONS and name not in _USE_KEYS),
        "closes",
        "use_s",
        "use_max_s",
    )

    borrows: int
    borrows_waited: int
    borrow_wait_ms: float
    borrow_timeouts: int
    borrow_errors: int
    borrows_rejected: int
    returns: int
    use_s: float
    use_max_s: float
    rollbacks_on_return: int
    session_resets: int
    connections_made: int
    connect_errors: int
    connect_ms: float
    leaks_detected: int
    keepalive_pings: int
    kills: int
    kill_failures: int

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)
        self.closes: Dict[str, int] = dict.fromkeys(CLOSE_REASONS, 0)

    def snapshot(self) -> Dict[str, Number]:
        closes = self.closes
        data: Dict[str, Number] = {}
        for name in COUNTERS:
            if name in closes:
                data[name] = closes[name]
            elif name == "uses":
                data[name] = self.returns
            elif name == "use_ms":
                data[name] = self.use_s * 1000.0
            elif name == "use_max_ms":
                data[name] = self.use_max_s * 1000.0
            else:
                data[name] = getattr(self, name)
        return data
