"""TLS contexts built once per pool instead of once per connection.

PyMySQL (1.2 and later) builds a new ``ssl.SSLContext`` in every
``Connection()``, loading the system CA store even when the server offers no
TLS: about 90 times the cost of the rest of a connect. The pool's connections
hand that work to one :class:`TlsContexts` per pool, which keeps PyMySQL's
own rules (its ``_create_ssl_ctx`` still builds the context) and only
remembers the result:

* TLS options given (``ssl``, ``ssl_ca``, ``ssl_verify_*``...): TLS required,
  the context is built on the first connect and reused while the options and
  the files they name stay the same (a renewed certificate is picked up).
* No TLS option ("preferred": TLS if the server offers it): nothing is built
  until a server actually offers TLS, then once.
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

Builder = Callable[[Dict[str, Any]], Any]

# The options of PyMySQL's TLS dict that name files or directories.
_FILE_OPTIONS = ("ca", "capath", "cert", "key")


class TlsContexts:
    """One pool's TLS context, shared by all its connections (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: Optional[Tuple[Any, ...]] = None
        self._context: Any = None
        self.built = 0  # contexts built so far: 1 for a pool's whole life unless files change

    def after_fork(self) -> None:
        """In a forked child: another thread of the parent may have held the
        lock at the fork, and will never release it here. The context itself
        holds no socket and stays usable."""
        self._lock = threading.Lock()

    def context(self, options: Any, build: Builder) -> Any:
        """What PyMySQL's ``_create_ssl_ctx(options)`` returns, built at most
        once for the same options and files."""
        if isinstance(options, ssl.SSLContext):
            return options  # the caller's own context: nothing to build
        if not options:
            return _Deferred(self, build)
        key = _fingerprint(options)
        with self._lock:
            if self._context is None or key != self._key:
                # Under the lock: a warm-up dialing on several threads builds it once.
                self._context = build(dict(options))
                self._key = key
                self.built += 1
            return self._context


class _Deferred:
    """Preferred mode's context, built only when a server offers TLS.

    PyMySQL calls nothing but ``wrap_socket`` on it; any other attribute is
    read from the real context so a future PyMySQL still works.
    """

    __slots__ = ("_build", "_contexts")

    def __init__(self, contexts: TlsContexts, build: Builder) -> None:
        self._contexts = contexts
        self._build = build

    def _real(self) -> Any:
        return self._contexts.context({"_preferred": True}, lambda _: self._build({}))

    def wrap_socket(self, *args: Any, **kwargs: Any) -> Any:
        return self._real().wrap_socket(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real(), name)


def _fingerprint(options: Dict[str, Any]) -> Tuple[Any, ...]:
    """The options plus identity and age of each file they name."""
    items = tuple(sorted((str(k), repr(v)) for k, v in options.items()))
    files: List[Tuple[Any, ...]] = []
    for name in _FILE_OPTIONS:
        path = options.get(name)
        if isinstance(path, (str, bytes, os.PathLike)):
            try:
                st = os.stat(path)
                files.append((name, st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                files.append((name, None))  # let PyMySQL's build report it
    return items + tuple(files)
