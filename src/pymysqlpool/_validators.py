"""Argument checks with one error policy, for every entry point: the pools'
constructors and methods, the clusters, the URL parser (``_urls``), the
command line and the SQLAlchemy helper.

A value of the wrong type raises ``TypeError``; a value of the right type
that is out of range raises ``ValueError``. The message names the parameter
and, where there is one, the pool (``pool 'orders': timeout must be ...``).
Touches nothing but its arguments.
"""

from __future__ import annotations

import math
from typing import Any, Optional

__all__ = ["count", "flag", "host", "int_between", "optional_seconds", "port", "port_text", "seconds"]


def _named(name: str, owner: Optional[str]) -> str:
    return f"pool {owner!r}: {name}" if owner else name


def seconds(name: str, value: Any, owner: Optional[str] = None) -> float:
    """A duration: an int or float >= 0 (``inf`` included, NaN not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{_named(name, owner)} must be a number of seconds, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        number = math.inf
    if math.isnan(number) or number < 0:
        raise ValueError(f"{_named(name, owner)} must be >= 0 seconds, got {value}")
    return number


def optional_seconds(name: str, value: Any, owner: Optional[str] = None) -> Optional[float]:
    """:func:`seconds`, or None."""
    return None if value is None else seconds(name, value, owner)


def flag(name: str, value: Any, owner: Optional[str] = None) -> bool:
    """A switch: True or False. Not any truthy value: ``"no"`` or ``"false"``
    (a string from a config file) would silently mean True."""
    if value is not True and value is not False:
        raise TypeError(f"{_named(name, owner)} must be True or False, got {value!r}")
    return value


def count(name: str, value: Any, low: int = 0, owner: Optional[str] = None) -> int:
    """An int >= ``low`` (a bool is not an int here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{_named(name, owner)} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{_named(name, owner)} must be >= {low}, got {value}")
    return value


def int_between(name: str, value: Any, low: int, high: int, hint: str = "") -> int:
    """An int from ``low`` to ``high``; ``hint`` follows the range in the message."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be an int from {low} to {high}{hint}, got {value}")
    return value


def port(name: str, value: Any) -> int:
    """A TCP port, 1-65535."""
    return int_between(name, value, 1, 65535)


def port_text(name: str, text: str) -> int:
    """A port written in a URL, a ``host:port`` or on the command line: ASCII
    digits only (no sign, space or other script's digits), 1-65535."""
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or not 0 < int(text) < 65536:
        raise ValueError(f"{name}: port must be a number between 1 and 65535, got {text!r}")
    return int(text)


def host(name: str, value: Any) -> str:
    """A host name or address the resolver can take: a str with neither a
    lone surrogate (its encoding fails at the first connect) nor a NUL (one
    driver refuses it, another cuts the name there)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str or None, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} must be a host name or address, got {value!r} (a lone surrogate)") from None
    if "\x00" in value:
        raise ValueError(f"{name} must be a host name or address, got {value!r} (a NUL character)")
    return value
