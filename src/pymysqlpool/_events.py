"""Events: objects whose ``on_*`` methods the pool calls at points of a
connection's life (see docs/guide.md, "Running in production").

Each object's methods are looked up once, when it is added; the pool keeps one
tuple of bound methods per event, so firing an event no object listens to is a
test of an empty tuple, and with no object at all the hot path is not diverted.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Sequence, Tuple

__all__ = ["EVENTS", "Events", "ResetHook"]

logger = logging.getLogger("pymysqlpool")

# event -> the arguments its method receives
EVENTS: Dict[str, str] = {
    "on_connect": "(raw, seconds)",
    "on_checkout": "(raw, waited)",
    "on_checkin": "(raw, used)",
    "on_close": "(raw, reason)",
    "on_timeout": "(waited,)",
}

Hook = Callable[..., Any]


class Events:
    """The events objects of one pool, and per event the bound methods to call.

    Mutated only under the pool lock; readers take one tuple attribute and
    iterate it, so a concurrent add or remove is seen whole or not at all.
    """

    __slots__ = ("_bound", "on_checkin", "on_checkout", "on_close", "on_connect", "on_timeout")

    on_connect: Tuple[Hook, ...]
    on_checkout: Tuple[Hook, ...]
    on_checkin: Tuple[Hook, ...]
    on_close: Tuple[Hook, ...]
    on_timeout: Tuple[Hook, ...]

    def __init__(self) -> None:
        self._bound: List[Tuple[Any, Dict[str, Hook]]] = []
        self._rebuild()

    def add(self, obj: Any) -> None:
        if obj is None or any(known is obj for known, _ in self._bound):
            return
        methods = {name: getattr(obj, name) for name in EVENTS if callable(getattr(obj, name, None))}
        if not methods:
            raise TypeError(
                f"events: {type(obj).__name__} has none of the event methods {', '.join(EVENTS)}: not an events object"
            )
        self._bound.append((obj, methods))
        self._rebuild()

    def remove(self, obj: Any) -> bool:
        kept = [entry for entry in self._bound if entry[0] is not obj]
        if len(kept) == len(self._bound):
            return False
        self._bound = kept
        self._rebuild()
        return True

    def _rebuild(self) -> None:
        for name in EVENTS:
            setattr(self, name, tuple(methods[name] for _, methods in self._bound if name in methods))

    @property
    def objects(self) -> Tuple[Any, ...]:
        return tuple(obj for obj, _ in self._bound)


def as_sequence(events: Any) -> Sequence[Any]:
    """``events=`` takes one object or a sequence of them."""
    if events is None:
        return ()
    if isinstance(events, (list, tuple)):
        return events
    return (events,)


def fire_logged(hooks: Tuple[Hook, ...], pool_name: str, *args: Any) -> None:
    """Call every hook; an error is logged and ignored (on_close, on_timeout)."""
    for hook in hooks:
        try:
            hook(*args)
        except Exception:
            logger.exception("pool %r: event hook %r failed; ignored", pool_name, hook)


class ResetHook:
    """``reset=fn``: psycopg_pool's name for a check-in hook that receives
    only the connection. One rule for both: it is an ``on_checkin``."""

    __slots__ = ("reset",)

    def __init__(self, reset: Callable[[Any], Any]) -> None:
        self.reset = reset

    def on_checkin(self, raw: Any, used: float) -> None:
        self.reset(raw)
