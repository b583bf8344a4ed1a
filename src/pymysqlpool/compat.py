"""pymysql-pool 0.5.0 names that need more than an alias.

0.5.0's ``ConnectionPoolSingleton`` kept one instance for the whole process
and silently re-ran ``__init__`` on every call. Here there is one pool per
name, and asking for an existing name with different settings is an error
instead of a silent re-configuration.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any, ClassVar, Dict, Tuple

from ._config import pool_label
from .pool import ConnectionPool

__all__ = ["ConnectionPoolSingleton"]

_SIGNATURE = inspect.signature(ConnectionPool.__init__)


def _arguments(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Dict[str, Any]:
    try:
        bound = _SIGNATURE.bind(None, *args, **kwargs)
    except TypeError as exc:  # "too many positional arguments": say whose
        raise TypeError(f"ConnectionPoolSingleton(): {exc}") from None
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    arguments.pop("self")
    arguments.update(arguments.pop("connect_kwargs"))
    return arguments


class ConnectionPoolSingleton(ConnectionPool):
    """One shared pool per name: calling it again with the same name returns
    the same pool. Different settings for an existing name raise ValueError."""

    _instances: ClassVar[Dict[str, ConnectionPoolSingleton]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()
    _settings: Dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> ConnectionPoolSingleton:
        settings = _arguments(args, kwargs)
        name = pool_label(settings.pop("name"), settings.pop("pool_name"), settings)
        settings["name"] = name  # name= and pool_name= are one setting
        with cls._registry_lock:
            existing = cls._instances.get(name)
            if existing is not None and not existing.shut_down:  # closed, not merely unopened (open=False)
                if existing._settings != settings:
                    changed = sorted(
                        k
                        for k in set(settings) | set(existing._settings)
                        if settings.get(k) != existing._settings.get(k)
                    )
                    raise ValueError(
                        f"pool {name!r} already exists with other settings ({', '.join(changed)});"
                        " use another name or the same arguments"
                    )
                return existing
            instance = super().__new__(cls)
            instance._settings = settings
            ConnectionPool.__init__(instance, *args, **kwargs)
            cls._instances[name] = instance
            return instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Set up once in __new__; Python calls __init__ again on every
        # ConnectionPoolSingleton(...) and it must not re-configure the pool.
        pass
