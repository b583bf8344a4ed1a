"""The one parser of ``mysql://`` URLs and ``host:port`` strings.

``ConnectionPool.from_url``, ``ClusterPool``, the SQLAlchemy helper and the
command line all read URLs here, so they accept and refuse the same things:

- scheme ``mysql``/``mariadb``, optionally with a driver (``mysql+pymysql``);
- ``user:password@``: everything up to the last ``@`` is the user information,
  so a password may hold ``#``, ``/``, ``?`` or ``:`` as they are; ``%xx`` is
  decoded in user, password and database;
- hosts ``h``, ``h:port``, ``[v6]``, ``[v6]:port``, comma-separated for a
  cluster; a port is 1-65535 written in ASCII digits only;
- one database name as the path; no fragment (``#`` outside the password);
- query parameters only from the caller's list; others are refused by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Collection, Dict, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import parse_qsl, unquote

from ._validators import port_text

__all__ = ["ParsedUrl", "parse", "parse_host", "parse_hosts"]

Host = Tuple[str, int]
DEFAULT_PORT = 3306
_SCHEME = re.compile(r"^(mysql|mariadb)(\+[a-z0-9_]+)?$")
_HOST_CHARS = re.compile(r"^[A-Za-z0-9._%-]+$")
_V6_CHARS = re.compile(r"^[0-9A-Fa-f:.%A-Za-z]+$")

# Query parameters a pool accepts from a URL (scalars only: no ssl={dict}, conv, cursorclass).
CONNECT_QUERY_KEYS = frozenset(
    {
        "charset",
        "collation",
        "connect_timeout",
        "read_timeout",
        "write_timeout",
        "init_command",
        "sql_mode",
        "local_infile",
        "max_allowed_packet",
        "program_name",
        "bind_address",
        "ssl_ca",
        "ssl_cert",
        "ssl_key",
        "ssl_key_password",
        "ssl_verify_cert",
        "ssl_verify_identity",
        "ssl_disabled",
    }
)
POOL_QUERY_KEYS = frozenset(
    {
        "size",
        "maxsize",
        "pre_create_num",
        "con_lifetime",
        "autocommit",
        "pool_name",
        "timeout",
        "validation_interval",
        "keepalive_interval",
        "max_idle",
        "leak_timeout",
        "reset_session",
        "max_waiting",
        "reconnect_timeout",
    }
)
CLUSTER_QUERY_KEYS = frozenset(
    {"max_lag", "causal", "probe_interval", "probe_timeout", "read_fallback_to_primary", "galera_writer", "balance"}
)
SOCKET_KEYS = {"socket": "unix_socket", "unix_socket": "unix_socket"}
# Query parameters whose value is text as written: ``pool_name=2024`` is a
# name and ``ssl_key_password=1234`` a password, not numbers.
TEXT_QUERY_KEYS = frozenset(
    {
        "pool_name",
        "init_command",
        "sql_mode",
        "program_name",
        "bind_address",
        "charset",
        "collation",
        "ssl_ca",
        "ssl_cert",
        "ssl_key",
        "ssl_key_password",
        "ssl_verify_cert",
        *SOCKET_KEYS,
    }
)


@dataclass(frozen=True)
class ParsedUrl:
    """What a URL gives; ``None``/absent for the parts it leaves out."""

    hosts: List[Host] = field(default_factory=list)
    user: Optional[str] = None
    password: Optional[str] = None
    database: Optional[str] = None
    query: Dict[str, Any] = field(default_factory=dict)
    port_given: bool = False  # the first host has an explicit port (else DEFAULT_PORT)

    def connect_kwargs(self) -> Dict[str, Any]:
        """user, password, database and the query parameters, as keywords."""
        out: Dict[str, Any] = {}
        for key in ("user", "password", "database"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out.update(self.query)
        return out


def parse(url: str, *, query_keys: Collection[str], what: str = "URL") -> ParsedUrl:
    """Parse ``url``; ValueError naming what is wrong (never the password)."""
    if not isinstance(url, str):
        raise TypeError(f"{what} must be a string, got {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.match(scheme.lower()):
        shown = f"{scheme}://" if sep else "no scheme"
        raise ValueError(f"{what}: expected a MySQL or MariaDB URL (mysql:// or mariadb://), got {shown}")
    userinfo, at, tail = rest.rpartition("@")
    if not at:
        userinfo, tail = "", rest
    cut = min((i for i in (tail.find("/"), tail.find("?")) if i >= 0), default=len(tail))
    hostlist, tail = tail[:cut], tail[cut:]
    path, _, query = tail.partition("?")
    if "#" in hostlist or "#" in path or "#" in query:
        raise ValueError(f"{what}: a URL fragment (#...) is not allowed (a '#' in the password is fine)")
    user: Optional[str] = None
    password: Optional[str] = None
    if at:
        name, colon, secret = userinfo.partition(":")
        user = unquote(name)
        if colon:
            password = unquote(secret)
    items = [_host_and_port(item, what) for item in hostlist.split(",")] if hostlist else []
    hosts = [(host, DEFAULT_PORT if port is None else port) for host, port in items]
    database: Optional[str] = None
    if path not in ("", "/"):
        database = unquote(path[1:])
        if "/" in database:
            raise ValueError(f"{what}: the path must be a single database name, got {path!r}")
    found: Dict[str, Any] = {}
    if query:
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise ValueError(f"{what}: cannot parse the query {query!r}") from None
        for key, value in pairs:
            if key not in query_keys:
                known = ", ".join(sorted(query_keys)) or "none"
                raise ValueError(f"{what}: unknown query parameter {key!r} (known: {known})")
            if SOCKET_KEYS.get(key, key) in found:  # which one was meant cannot be told
                raise ValueError(f"{what}: query parameter {key!r} given twice")
            found[SOCKET_KEYS.get(key, key)] = value if key in TEXT_QUERY_KEYS else _scalar(value)
    return ParsedUrl(hosts, user, password, database, found, bool(items) and items[0][1] is not None)


def parse_host(item: str, *, what: str = "host") -> Host:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` -> (host, port); strict."""
    host, port = _host_and_port(item, what)
    return host, DEFAULT_PORT if port is None else port


def _host_and_port(item: str, what: str) -> Tuple[str, Optional[int]]:
    if item.startswith("["):
        close = item.find("]")
        if close < 0:
            raise ValueError(f"{what}: unclosed '[' in {item!r}")
        host, rest = item[1:close], item[close + 1 :]
        if not host or not _V6_CHARS.match(host) or ":" not in host:
            raise ValueError(f"{what}: bad IPv6 address in {item!r}")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{what}: unexpected {rest!r} after the address in {item!r}")
        return host, _port(rest[1:], item, what) if rest else None
    host, colon, port = item.partition(":")
    if ":" in port:
        raise ValueError(f"{what}: {item!r} has more than one ':' (write an IPv6 address in brackets: [::1]:3306)")
    if not host:
        raise ValueError(f"{what}: empty host in {item!r}")
    if not _HOST_CHARS.match(host):
        raise ValueError(f"{what}: bad host name {host!r} (no spaces or special characters)")
    return unquote(host), _port(port, item, what) if colon else None


def parse_hosts(hosts: Any) -> List[Host]:
    """``hosts=`` of a cluster: a list or tuple of ``(host, port)`` pairs or
    ``"host:port"`` strings (see :func:`parse_host`)."""
    if isinstance(hosts, (str, bytes, Mapping)) or not isinstance(hosts, Sequence):
        raise TypeError(f"hosts= takes a list of (host, port) pairs or 'host:port' strings, got {type(hosts).__name__}")
    return [_one_host(item) for item in hosts]


def _one_host(item: Union[str, Sequence[Any]]) -> Host:
    if isinstance(item, str):
        return parse_host(item, what="hosts=")
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise TypeError(f"hosts= takes (host, port) pairs or 'host:port' strings, got {item!r}")
    host, port = item
    if not isinstance(host, str) or isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"hosts= takes (host, port) pairs or 'host:port' strings, got {item!r}")
    if not host or host != host.strip() or any(c.isspace() for c in host):
        raise ValueError(f"hosts=: bad host {host!r} in {item!r}")
    if not 0 < port < 65536:
        raise ValueError(f"hosts=: port must be between 1 and 65535, got {port} in {item!r}")
    return host, port


def _port(text: str, item: str, what: str) -> int:
    return port_text(f"{what} {item!r}", text)


def _scalar(text: str) -> Any:
    """Query values: ASCII integers and decimals become numbers, true/false booleans."""
    if re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    if re.fullmatch(r"-?[0-9]+\.[0-9]*|-?\.[0-9]+", text):
        return float(text)
    return {"true": True, "false": False}.get(text.lower(), text)
