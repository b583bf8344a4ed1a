"""Fork safety: a child process must never talk on its parent's sockets.

Every object that holds sockets or threads (a pool, a cluster) registers
here with the function that resets it in a forked child. The at-fork hook is
installed with the first registration (not at import); in the child each live
owner forgets what it inherited without closing it politely (no COM_QUIT
reaches the server), in the order they registered: a cluster's node pools
are reset before the cluster that starts its monitor on them again.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Callable

__all__ = ["register"]

# Owner -> its reset, called as reset(owner). Weak: a forgotten pool is not kept alive.
_owners: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = weakref.WeakKeyDictionary()
_installed = False
_install_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _install_lock
    _install_lock = threading.Lock()
    for owner, reset in list(_owners.items()):
        reset(owner)


def register(owner: Any, reset: Callable[[Any], None]) -> None:
    """Call ``reset(owner)`` in every forked child while ``owner`` lives
    (``reset`` an unbound function: a bound method would keep it alive)."""
    global _installed
    with _install_lock:
        if not _installed and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _installed = True
        _owners[owner] = reset
