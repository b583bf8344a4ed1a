"""Connection and pool settings for the command line.

Each connection setting is taken from the first source that gives it:
command-line flag, then ``--url``, then the ``MYSQL_*`` environment variables,
then the defaults. The password is never shown: :meth:`ConnectionSettings.describe`
prints ``***`` in its place.
"""

from __future__ import annotations

import argparse
import getpass
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

from .. import _urls
from .._validators import port_text

__all__ = [
    "DEFAULTS",
    "ENV_VARS",
    "ConnectionSettings",
    "PoolSettings",
    "UsageError",
    "add_connection_arguments",
    "add_pool_arguments",
    "parse_url",
    "pool_settings",
    "resolve",
    "settings_from_env",
]

DEFAULTS: Dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 3306,
    "user": "root",
    "password": "",
    "database": "test",
    "socket": None,
}

# setting -> environment variable (the names the mysql client uses)
ENV_VARS: Dict[str, str] = {
    "host": "MYSQL_HOST",
    "port": "MYSQL_PORT",
    "user": "MYSQL_USER",
    "password": "MYSQL_PWD",
    "database": "MYSQL_DATABASE",
}

URL_SCHEMES = ("mysql", "mariadb", "mysql+pymysql", "mariadb+pymysql")
_URL_QUERY_KEYS = frozenset(_urls.SOCKET_KEYS)

# argparse stores this when --password is given without a value: ask on the terminal.
_PROMPT = object()


class UsageError(Exception):
    """Bad settings given by the user: exit status 2, like an argparse error."""


@dataclass(frozen=True)
class ConnectionSettings:
    host: str
    port: int
    user: str
    password: str
    database: str
    socket: Optional[str] = None
    connect_timeout: float = 5.0

    def connect_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments for ``pymysql.connect()`` and ``ConnectionPool()``."""
        kwargs: Dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
            "connect_timeout": self.connect_timeout,
        }
        if self.socket:
            kwargs["unix_socket"] = self.socket
        return kwargs

    @property
    def where(self) -> str:
        if self.socket:
            return f"{self.user}@localhost/{self.database} via socket {self.socket}"
        return f"{self.user}@{_host_for_display(self.host)}:{self.port}/{self.database}"

    def describe(self) -> str:
        """One line for humans; the password shows as ``***`` (or ``none``)."""
        return f"{self.where} (password: {'***' if self.password else 'none'})"

    def public_dict(self) -> Dict[str, Any]:
        """The settings with the password masked, for JSON output."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": "***" if self.password else "",
            "database": self.database,
            "socket": self.socket,
            "connect_timeout": self.connect_timeout,
        }


@dataclass(frozen=True)
class PoolSettings:
    maxsize: int
    pre_create: int
    lifetime: float
    timeout: float

    def pool_kwargs(self) -> Dict[str, Any]:
        return {
            "maxsize": self.maxsize,
            "pre_create_num": self.pre_create,
            "con_lifetime": self.lifetime,
            "timeout": self.timeout,
        }

    def describe(self) -> str:
        lifetime = "never" if not self.lifetime else f"{self.lifetime:g} s"
        return (
            f"maxsize={self.maxsize} pre_create_num={self.pre_create} con_lifetime={lifetime}"
            f" timeout={self.timeout:g} s"
        )


def _host_for_display(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _port(value: str, source: str) -> int:
    """The rule of every port the package parses (``_validators.port_text``)."""
    try:
        return port_text(source, value)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def parse_url(url: str) -> Dict[str, Any]:
    """The settings a ``mysql://user:pass@host:port/db`` URL gives.

    Only the parts present are returned, so the environment and the defaults
    fill the rest. The rules are those of every URL of the package
    (``pymysqlpool._urls``): ``%xx`` decoded, a ``#`` allowed in the password,
    an IPv6 host in brackets, strict ports; ``?socket=/path`` (or
    ``unix_socket``) names a Unix socket. Raises :class:`UsageError` for
    anything else.
    """
    try:
        parsed = _urls.parse(url, query_keys=_URL_QUERY_KEYS, what="--url")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if len(parsed.hosts) > 1:
        raise UsageError("--url: several hosts name a cluster: use pymysqlpool check --url for a cluster")
    found: Dict[str, Any] = {}
    for key in ("user", "password", "database"):
        value = getattr(parsed, key)
        if value is not None and (value or key == "password"):
            found[key] = value
    if parsed.hosts:
        found["host"], port = parsed.hosts[0]
        if parsed.port_given:
            found["port"] = port
    if "unix_socket" in parsed.query:
        found["socket"] = parsed.query["unix_socket"]
    return found


def settings_from_env(env: Mapping[str, str]) -> Dict[str, Any]:
    """The settings the ``MYSQL_*`` variables give (empty ones are ignored)."""
    found: Dict[str, Any] = {}
    for key, var in ENV_VARS.items():
        value = env.get(var)
        if value:
            found[key] = _port(value, var) if key == "port" else value
    return found


def resolve(args: argparse.Namespace, env: Mapping[str, str]) -> ConnectionSettings:
    """Merge flag > URL > environment > defaults."""
    merged: Dict[str, Any] = dict(DEFAULTS)
    merged.update(settings_from_env(env))
    if args.url:
        merged.update(parse_url(args.url))
    password = args.password
    if password is _PROMPT:
        try:
            password = getpass.getpass("Password: ")
        except (EOFError, KeyboardInterrupt):
            raise UsageError("--password given without a value and no password could be read") from None
    flags = {
        "host": args.host,
        "port": args.port,
        "user": args.user,
        "password": password,
        "database": args.database,
        "socket": args.socket,
    }
    merged.update({k: v for k, v in flags.items() if v is not None})
    # Kept on the namespace so a last-resort error message can mask it too.
    args.resolved_password = merged["password"]
    if not merged["socket"] and not merged["host"]:
        raise UsageError("no host given")
    return ConnectionSettings(
        host=merged["host"],
        port=merged["port"],
        user=merged["user"],
        password=merged["password"],
        database=merged["database"],
        socket=merged["socket"] or None,
        connect_timeout=args.connect_timeout,
    )


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an int >= 0."""
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def seconds(text: str) -> float:
    """argparse type: a number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, got {text}")
    return value


def _port_arg(text: str) -> int:
    try:
        return _port(text, "--port")
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "connection",
        "Each setting comes from its flag, else --url, else the environment\n"
        "(MYSQL_HOST, MYSQL_PORT, MYSQL_USER, MYSQL_PWD, MYSQL_DATABASE), else the\n"
        "default (127.0.0.1, 3306, root, no password, test).",
    )
    group.add_argument("--url", metavar="URL", help="mysql://user:password@host:port/database (also mariadb://)")
    group.add_argument("--host", metavar="HOST", help="server host name or address")
    group.add_argument("--port", metavar="PORT", type=_port_arg, help="server TCP port")
    group.add_argument("--user", metavar="USER", help="login user")
    group.add_argument(
        "--password",
        metavar="PASSWORD",
        nargs="?",
        const=_PROMPT,
        help="login password; without a value, asked on the terminal (MYSQL_PWD keeps it out of `ps`)",
    )
    group.add_argument("--database", metavar="NAME", help="database to use")
    group.add_argument("--socket", metavar="PATH", help="Unix socket path (the host and port are then ignored)")
    group.add_argument(
        "--connect-timeout",
        metavar="SECONDS",
        type=seconds,
        default=5.0,
        help="give up connecting after this long (default: 5)",
    )


def add_pool_arguments(
    parser: argparse.ArgumentParser,
    *,
    maxsize: int,
    pre_create: int = 0,
    lifetime: float = 3600.0,
    timeout: float = 30.0,
) -> None:
    # Each flag is its ConnectionPool() parameter, dashed (docs/parameters.md,
    # "Names"); the shorter spellings of earlier releases stay as aliases.
    group = parser.add_argument_group("pool")
    group.add_argument(
        "--maxsize",
        metavar="N",
        type=positive_int,
        default=maxsize,
        help=f"most connections the pool opens at once (default: {maxsize})",
    )
    group.add_argument(
        "--pre-create-num",
        "--pre-create",
        dest="pre_create",
        metavar="N",
        type=non_negative_int,
        default=pre_create,
        help=f"connections opened up front and kept open (default: {pre_create})",
    )
    group.add_argument(
        "--con-lifetime",
        "--lifetime",
        dest="lifetime",
        metavar="SECONDS",
        type=seconds,
        default=lifetime,
        help=f"retire connections older than this; 0 = never (default: {lifetime:g})",
    )
    group.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=seconds,
        default=timeout,
        help=f"longest wait for a free connection (default: {timeout:g})",
    )


def pool_settings(args: argparse.Namespace) -> PoolSettings:
    if args.pre_create > args.maxsize:
        raise UsageError(f"--pre-create-num ({args.pre_create}) must not exceed --maxsize ({args.maxsize})")
    return PoolSettings(
        maxsize=args.maxsize,
        pre_create=args.pre_create,
        lifetime=args.lifetime,
        timeout=args.timeout,
    )
