"""Validation of the pool's arguments, done before any connection is made."""

from __future__ import annotations

import math
import os
import re
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

import pymysql.charset
import pymysql.cursors

from . import _driver
from ._validators import count, flag, int_between, optional_seconds, seconds
from ._validators import host as _valid_host

# Keywords the pool manages itself: passing them through would break it.
_RESERVED = {"defer_connect": "the pool opens connections itself"}

# Other pools' names for what this pool calls otherwise: a TypeError says which.
_OTHER_POOLS = {
    "pool_size": "SQLAlchemy's; use size= (connections kept idle) and maxsize= (the most open at once)",
    "max_overflow": "SQLAlchemy's; use maxsize= (the most open at once: pool_size + max_overflow)",
    "pool_recycle": "SQLAlchemy's; use con_lifetime= (seconds before a connection is replaced)",
    "pool_timeout": "SQLAlchemy's; use timeout= (seconds a borrow waits)",
    "pool_pre_ping": "SQLAlchemy's; the pool pings a connection idle longer than validation_interval= (seconds)",
    "max_lifetime": "psycopg_pool's; use con_lifetime= (seconds before a connection is replaced)",
    "minsize": "aiomysql's; use pre_create_num= (opened at start) and size= (kept idle)",
    "min_size": "psycopg_pool's; use pre_create_num= (opened at start) and size= (kept idle)",
    "max_size": "psycopg_pool's; use maxsize=",
}

# PyMySQL's own bound on connect_timeout (one year). Used for every socket
# timeout: socket.settimeout() overflows a little above 9.2e9 s.
_MAX_SOCKET_TIMEOUT = 31_536_000


KILL_FLOOR = 1.0  # seconds: the least the kill of an abandoned session is given (see kill_timeout)
# Seconds a session the server has marked killed is watched beyond kill_timeout.
# MariaDB's KILL may wait up to 2 s to wake a session that waits (SLEEP, a lock
# wait), then leave it 'Killed' until that wait ends by itself: a healthy server.
KILL_WATCH = 5.0


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
    kill_on_abandon: bool = True  # KILL a session abandoned mid-statement (see _disposal.abandoned)

    @property
    def io_timeout(self) -> float:
        """Cap on any wait the pool itself starts (handshake, ping, reset):
        ``connect_timeout``, a number (check_connect_kwargs refuses a callable)."""
        return float(self.connect_kwargs.get("connect_timeout", 10))

    @property
    def kill_timeout(self) -> float:
        """Bound of the kill of an abandoned session: connect_timeout, but
        never below KILL_FLOOR. A tiny connect_timeout that serves the pool's
        own connects on loopback leaves no time for the kill's connect, uptime
        query, KILL and process-list look: every statement would run on."""
        return max(self.io_timeout, KILL_FLOOR)

    @property
    def kill_bound(self) -> float:
        """Bound of the whole kill: kill_timeout to reach the server and have
        the KILL answered, then KILL_WATCH for the server to drop the session."""
        return self.kill_timeout + KILL_WATCH


def deferred(value: Any) -> bool:
    """A connect argument given as a zero-argument callable (not a class such
    as ``cursorclass``): evaluated at each connect, e.g. a rotating password."""
    return callable(value) and not isinstance(value, type)


def resolve(connect_kwargs: Dict[str, Any], check: bool = False) -> Dict[str, Any]:
    """The arguments for one connect, with deferred values evaluated now;
    PyMySQL then validates what they returned. ``check``: validate them here,
    by the constructor's rules (for a driver that does not, such as aiomysql)."""
    if not any(deferred(value) for value in connect_kwargs.values()):
        return connect_kwargs
    resolved = {key: value() if deferred(value) else value for key, value in connect_kwargs.items()}
    if check:
        check_connect_kwargs({key: resolved[key] for key, value in connect_kwargs.items() if deferred(value)})
    return resolved


def _shown(value: Any) -> str:
    """A connect argument for labels and messages: a deferred one is not called."""
    return "<callable>" if deferred(value) else str(value)


def _wait(name: str, value: Any) -> float:
    """A borrow's wait: seconds >= 0; None or anything beyond what a lock
    can wait for (``threading.TIMEOUT_MAX``, inf included) is forever."""
    if value is None:
        return math.inf
    limit = seconds(name, value)
    return math.inf if limit >= threading.TIMEOUT_MAX else limit


# -- PyMySQL's keywords --------------------------------------------------------
# One rule per keyword of pymysql.connect(): the types PyMySQL uses the value
# as, and the ranges it (or the socket layer under it) rejects, so a bad value
# is refused in the constructor with its name instead of at the first borrow.


def _kind(*types: type, none: bool = True, what: str = "") -> Callable[[str, Any], None]:
    def rule(name: str, value: Any) -> None:
        if value is None and none:
            return
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            expected = what or " or ".join(t.__name__ for t in types) + (" or None" if none else "")
            raise TypeError(f"{name} must be {expected}, got {type(value).__name__}")

    return rule


_text = _kind(str)
_secret = _kind(str, bytes)
_path = _kind(str, os.PathLike, what="a path (str or os.PathLike) or None")
_flag = _kind(bool, none=False)
_tristate = _kind(bool)
_mapping = _kind(Mapping, what="a dict or None")


def _bounded_int(low: int, high: int, hint: str = "") -> Callable[[str, Any], None]:
    def rule(name: str, value: Any) -> None:
        int_between(name, value, low, high, hint)

    return rule


def _socket_timeout(none: bool) -> Callable[[str, Any], None]:
    def rule(name: str, value: Any) -> None:
        if value is None and none:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            expected = "a number of seconds" + (" or None" if none else "")
            raise TypeError(f"{name} must be {expected}, got {type(value).__name__}")
        if not 0 < value <= _MAX_SOCKET_TIMEOUT:  # NaN fails this too
            raise ValueError(f"{name} must be > 0 and <= {_MAX_SOCKET_TIMEOUT} seconds, got {value}")

    return rule


def _port(name: str, value: Any) -> None:
    if value is not None:
        _bounded_int(1, 65535, " (leave it out for 3306)")(name, value)


def _host(name: str, value: Any) -> None:
    if value is not None:
        _valid_host(name, value)


def _password(name: str, value: Any) -> None:
    _secret(name, value)
    if isinstance(value, str):
        try:
            value.encode("latin1")  # what PyMySQL does with a str password
        except UnicodeEncodeError:
            raise ValueError(f"{name} as a str must be latin-1; pass other passwords encoded, as bytes") from None


def _charset(name: str, value: Any) -> None:
    _text(name, value)
    if value and pymysql.charset.charset_by_name(value) is None:
        raise ValueError(f"{name} {value!r} is not a character set PyMySQL knows")


_IDENTIFIER = re.compile(r"[A-Za-z0-9_]+\Z")


def _statement(name: str, value: Any) -> None:
    _text(name, value)
    if value is not None and not value.strip():  # the server answers 1065 (empty query) at every connect
        raise ValueError(f"{name} must be an SQL statement or None, got {value!r}")


def _collation(name: str, value: Any) -> None:
    _text(name, value)
    if value is not None and not _IDENTIFIER.match(value):  # PyMySQL pastes it into SET NAMES
        raise ValueError(f"{name} must be a collation name (letters, digits, _), got {value!r}")


def _ssl(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, (Mapping, ssl.SSLContext)):
        raise TypeError(f"{name} must be a dict of ssl options, an ssl.SSLContext or None, got {type(value).__name__}")


_VERIFY_MODES = {"none", "0", "false", "no", "optional", "required", "1", "true", "yes"}


def _verify_cert(name: str, value: Any) -> None:
    if isinstance(value, str):
        if value.lower() not in _VERIFY_MODES:
            raise ValueError(f"{name} must be a bool or one of {sorted(_VERIFY_MODES)}, got {value!r}")
        return
    _tristate(name, value)


def _unsupported(name: str, value: Any) -> None:
    if value:
        raise ValueError(f"{name} is not supported by PyMySQL; leave it out")


def _cursorclass(name: str, value: Any) -> None:
    if not (isinstance(value, type) and issubclass(value, pymysql.cursors.Cursor)):
        raise TypeError(f"{name} must be a pymysql cursor class (a subclass of pymysql.cursors.Cursor), got {value!r}")


_CONNECT_RULES: Dict[str, Callable[[str, Any], None]] = {
    "host": _host,
    "user": _secret,
    "password": _password,
    "passwd": _password,
    "database": _secret,
    "db": _secret,
    "port": _port,
    "unix_socket": _path,
    "bind_address": _text,
    "charset": _charset,
    "collation": _collation,
    "sql_mode": _text,
    "init_command": _statement,
    "read_default_file": _path,
    "read_default_group": _text,
    "conv": _mapping,
    "auth_plugin_map": _mapping,
    "use_unicode": _flag,
    "binary_prefix": _flag,
    "local_infile": _flag,
    "client_flag": _bounded_int(0, 2**31 - 1),  # sent as a signed 32-bit int
    "max_allowed_packet": _bounded_int(1, 2**32 - 1),
    "cursorclass": _cursorclass,
    "connect_timeout": _socket_timeout(none=False),
    "read_timeout": _socket_timeout(none=True),
    "write_timeout": _socket_timeout(none=True),
    "program_name": _text,
    "server_public_key": _secret,
    "ssl": _ssl,
    "ssl_ca": _path,
    "ssl_cert": _path,
    "ssl_key": _path,
    "ssl_key_password": _secret,
    "ssl_disabled": _tristate,
    "ssl_verify_cert": _verify_cert,
    "ssl_verify_identity": _tristate,
    "compress": _unsupported,
    "named_pipe": _unsupported,
}

# Keywords the pool reads itself, so a callable cannot stand for them: the
# pool bounds its own waits by connect_timeout (see PoolConfig.io_timeout).
_VALUES_ONLY = frozenset({"connect_timeout"})

# Spellings PyMySQL takes for one setting: giving both is ambiguous.
_SAME_SETTING = (("database", "db"), ("password", "passwd"))


def check_connect_kwargs(kwargs: Dict[str, Any]) -> None:
    """Type- and range-check every PyMySQL keyword in ``kwargs``.

    A zero-argument callable (not a class) stands for a value computed at
    each connect (credential rotation): it is checked when it is called,
    except for ``_VALUES_ONLY``. A keyword without a rule (one a newer
    PyMySQL added) is passed as is.
    """
    for first, second in _SAME_SETTING:
        if kwargs.get(first) is not None and kwargs.get(second) is not None:
            raise TypeError(f"give {first}= only: {second}= is PyMySQL's old spelling of the same argument")
    for key, value in kwargs.items():
        rule = _CONNECT_RULES.get(key)
        if rule is None:
            continue
        if deferred(value):
            if key in _VALUES_ONLY:
                raise TypeError(
                    f"{key} must be a number of seconds, not a callable: the pool bounds its own waits by it"
                )
            continue
        rule(key, value)


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
            given = "pool_name" if pool_name is not None else "name"
            raise TypeError(f"{given} must be a str, got {type(label).__name__}")
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
    timeout: Optional[float],
    validation_interval: float,
    keepalive_interval: Optional[float],
    max_idle: float,
    leak_timeout: Optional[float],
    reset_session: bool,
    configure: Any,
    check: Any,
    connection_factory: Any,
    connect_kwargs: Dict[str, Any],
    kind: str = "ConnectionPool",
) -> PoolConfig:
    """The checked settings of a pool; ``kind`` (the class) names the pool in errors."""
    for key, hint in _OTHER_POOLS.items():
        if key in connect_kwargs:
            raise TypeError(f"{kind}() has no argument {key!r} ({hint})")
    if isinstance(size, str) and "://" in size:
        hint = "use ConnectionPool.from_url(url)" if kind == "ConnectionPool" else "pass host=, port=, user=... instead"
        raise TypeError(f"{kind}() takes no URL (its first argument is size): {hint}")
    for key, why in _RESERVED.items():
        if key in connect_kwargs:
            raise TypeError(f"{kind}() does not take {key!r}: {why}")
    if connection_factory is None:
        unknown = _driver.unknown_parameters(connect_kwargs)
        if unknown:
            raise TypeError(
                f"{kind}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}:"
                " neither a pool argument nor a pymysql.connect() argument"
            )
    maxsize = count("maxsize", maxsize, 1)
    size = min(10, maxsize) if size is None else count("size", size)
    if size > maxsize:
        raise ValueError(f"size ({size}) must not exceed maxsize ({maxsize})")
    pre_create_num = count("pre_create_num", pre_create_num)
    if pre_create_num > maxsize:
        raise ValueError(f"pre_create_num ({pre_create_num}) must not exceed maxsize ({maxsize})")
    flag("autocommit", autocommit)
    flag("reset_session", reset_session)
    label = pool_label(name, pool_name, connect_kwargs)
    check_connect_kwargs(connect_kwargs)
    keepalive = seconds("keepalive_interval", 60.0 if keepalive_interval is None else keepalive_interval)
    leak = optional_seconds("leak_timeout", leak_timeout)
    if leak == 0:
        raise ValueError("leak_timeout must be > 0 seconds, or None to turn leak warnings off")
    kwargs = dict(connect_kwargs)
    kwargs["autocommit"] = autocommit
    return PoolConfig(
        name=label,
        size=size,
        maxsize=maxsize,
        pre_create_num=pre_create_num,
        con_lifetime=seconds("con_lifetime", con_lifetime),
        autocommit=autocommit,
        timeout=_wait("timeout", timeout),
        validation_interval=seconds("validation_interval", validation_interval),
        keepalive_interval=keepalive,
        max_idle=seconds("max_idle", max_idle),
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
    return f"{_shown(kw.get('user') or '')}@{where}/{_shown(kw.get('database') or kw.get('db') or '')}"
