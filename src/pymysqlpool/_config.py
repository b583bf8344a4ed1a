"""Validation of the pool's arguments, done before any connection is made."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

from . import _driver

# Keywords the pool manages itself: passing them through would break it.
_RESERVED = {"defer_connect": "the pool opens connections itself"}


@dataclass(frozen=True)
class PoolConfig:
    name: str
    size: int
    maxsize: int
    pre_create_num: int
    con_lifetime: float
    autocommit: bool
    timeout: float
    validation_interval: float
    keepalive_interval: float
    max_idle: float
    leak_timeout: Optional[float]
    reset_session: bool
    configure: Optional[Callable[[Any], None]]
    check: Optional[Callable[[Any], Any]]
    connection_factory: Optional[Callable[..., Any]]
    connect_kwargs: Dict[str, Any] = field(repr=False)

    @property
    def io_timeout(self) -> float:
        """Cap on any wait the pool itself starts (handshake, ping, reset)."""
        value = self.connect_kwargs.get("connect_timeout", 10)
        return float(value) if value and not deferred(value) else 10.0


def deferred(value: Any) -> bool:
    """A connect argument given as a zero-argument callable (not a class such
    as ``cursorclass``): evaluated at each connect, e.g. a rotating password."""
    return callable(value) and not isinstance(value, type)


def resolve(connect_kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """The arguments for one connect, with deferred values evaluated now;
    PyMySQL then validates what they returned."""
    if not any(deferred(value) for value in connect_kwargs.values()):
        return connect_kwargs
    return {key: value() if deferred(value) else value for key, value in connect_kwargs.items()}


def _shown(value: Any) -> str:
    """A connect argument for labels and messages: a deferred one is not called."""
    return "<callable>" if deferred(value) else str(value)


def _int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def _seconds(name: str, value: Any, allow_none: bool = False) -> Optional[float]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be >= 0 seconds, got {value}")
    return float(value)


def _callable(name: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {type(value).__name__}")
    return value


def pool_label(name: Optional[str], pool_name: Optional[str], connect_kwargs: Dict[str, Any]) -> str:
    """The pool's name: ``pool_name``/``name``, or 0.5.0's host-port-user-database."""
    if name is not None and pool_name is not None and name != pool_name:
        raise TypeError("give the pool's name once: name= and pool_name= are the same argument")
    label = pool_name if pool_name is not None else name
    if label is not None:
        if not isinstance(label, str):
            raise TypeError(f"pool_name must be a str, got {type(label).__name__}")
        return label
    return "-".join(
        [
            _shown(connect_kwargs.get("host") or "localhost"),
            _shown(connect_kwargs.get("port") or 3306),
            _shown(connect_kwargs.get("user") or ""),
            _shown(connect_kwargs.get("database") or ""),
        ]
    )


def build(
    *,
    size: Optional[int],
    maxsize: int,
    name: Optional[str],
    pool_name: Optional[str],
    pre_create_num: int,
    con_lifetime: float,
    autocommit: bool,
    timeout: float,
    validation_interval: float,
    keepalive_interval: Optional[float],
    max_idle: float,
    leak_timeout: Optional[float],
    reset_session: bool,
    configure: Any,
    check: Any,
    connection_factory: Any,
    connect_kwargs: Dict[str, Any],
) -> PoolConfig:
    if "max_size" in connect_kwargs:
        raise TypeError("ConnectionPool() has no argument 'max_size': use maxsize=")
    if "min_size" in connect_kwargs:
        raise TypeError("ConnectionPool() has no argument 'min_size': use pre_create_num= (and size=)")
    for key, why in _RESERVED.items():
        if key in connect_kwargs:
            raise TypeError(f"ConnectionPool() does not take {key!r}: {why}")
    if connection_factory is None:
        unknown = _driver.unknown_parameters(connect_kwargs)
        if unknown:
            raise TypeError(
                f"ConnectionPool() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}:"
                " neither a pool argument nor a pymysql.connect() argument"
            )
    maxsize = _int("maxsize", maxsize, 1)
    size = min(10, maxsize) if size is None else _int("size", size, 0)
    if size > maxsize:
        raise ValueError(f"size ({size}) must not exceed maxsize ({maxsize})")
    pre_create_num = _int("pre_create_num", pre_create_num, 0)
    if pre_create_num > maxsize:
        raise ValueError(f"pre_create_num ({pre_create_num}) must not exceed maxsize ({maxsize})")
    if not isinstance(autocommit, bool):
        raise TypeError(f"autocommit must be True or False, got {autocommit!r}")
    if not isinstance(reset_session, bool):
        raise TypeError(f"reset_session must be True or False, got {reset_session!r}")
    label = pool_label(name, pool_name, connect_kwargs)
    if "connect_timeout" in connect_kwargs and not deferred(connect_kwargs["connect_timeout"]):
        _seconds("connect_timeout", connect_kwargs["connect_timeout"])
    keepalive = _seconds("keepalive_interval", 60.0 if keepalive_interval is None else keepalive_interval)
    leak = _seconds("leak_timeout", leak_timeout, allow_none=True)
    if leak == 0:
        raise ValueError("leak_timeout must be > 0 seconds, or None to turn leak warnings off")
    kwargs = dict(connect_kwargs)
    kwargs["autocommit"] = autocommit
    return PoolConfig(
        name=label,
        size=size,
        maxsize=maxsize,
        pre_create_num=pre_create_num,
        con_lifetime=_seconds("con_lifetime", con_lifetime) or 0.0,
        autocommit=autocommit,
        timeout=_seconds("timeout", timeout) or 0.0,
        validation_interval=_seconds("validation_interval", validation_interval) or 0.0,
        keepalive_interval=keepalive or 0.0,
        max_idle=_seconds("max_idle", max_idle) or 0.0,
        leak_timeout=leak,
        reset_session=reset_session,
        configure=_callable("configure", configure),
        check=_callable("check", check),
        connection_factory=_callable("connection_factory", connection_factory),
        connect_kwargs=kwargs,
    )


def describe(config: PoolConfig) -> str:
    """Where the pool connects, without the password."""
    kw = config.connect_kwargs
    where = _shown(kw.get("unix_socket") or f"{_shown(kw.get('host') or 'localhost')}:{_shown(kw.get('port') or 3306)}")
    return f"{_shown(kw.get('user') or '')}@{where}/{_shown(kw.get('database') or '')}"
