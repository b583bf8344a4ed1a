"""Count the TLS contexts built: PyMySQL builds each with ssl.create_default_context."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from typing import Any

import pytest


def count_tls_contexts(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Wrap ``ssl.create_default_context`` for the test; returns a reader of the count."""
    count = [0]
    lock = threading.Lock()
    real = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        with lock:
            count[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counting)
    return lambda: count[0]
