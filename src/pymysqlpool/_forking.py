"""Fork safety: a child process must never talk on its parent's sockets.

Pools register here; the at-fork hook is installed with the first pool (not
at import), and each live pool forgets its inherited connections in the
child without closing them politely (no COM_QUIT reaches the server).
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Protocol


class Forkable(Protocol):
    def _after_fork_in_child(self) -> None: ...


_pools: weakref.WeakSet[Any] = weakref.WeakSet()
_installed = False
_install_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _install_lock
    _install_lock = threading.Lock()
    for pool in list(_pools):
        pool._after_fork_in_child()


def register(pool: Forkable) -> None:
    global _installed
    with _install_lock:
        if not _installed and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _installed = True
        _pools.add(pool)
