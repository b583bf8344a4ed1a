"""The one polling helper every test tier uses, and its asyncio form."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` every ``interval`` seconds until it is true or
    ``timeout`` seconds have passed; return whether it held at the end.

    Bounded in time and in count. Callers that need the condition assert on
    the result (``assert wait_until(...)``); ``assert not wait_until(...)``
    checks that something does not happen within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        if predicate():
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    return bool(predicate())


async def settle(predicate: Callable[[], object], timeout: float = 10.0) -> bool:
    """``wait_until`` in a thread, while the calling event loop keeps running
    (a pool's closes and maintenance happen on it)."""
    return await asyncio.to_thread(wait_until, predicate, timeout)
