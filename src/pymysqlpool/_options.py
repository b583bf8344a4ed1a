"""The constructor options of both pools, defined once.

:func:`options` holds the parameters ``ConnectionPool(...)`` and
``AsyncConnectionPool(...)`` take -- their order, keywords, defaults and
types -- and sorts them into what ``_config.build`` reads and what
``PoolCore.__init__`` reads. :func:`takes` gives a pool's ``__init__`` that
signature, for callers, ``inspect.signature`` (the SQLAlchemy dialect and
``ConnectionPoolSingleton`` read it) and ``mypy --strict`` alike. Validation
is not here: ``_config.build`` and the core check the values. See
docs/parameters.md for what each one means.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, TypeVar

if TYPE_CHECKING:  # typing's from Python 3.10; the package runs on 3.9
    from typing import Concatenate, ParamSpec

    P = ParamSpec("P")

__all__ = ["Options", "options", "takes"]

S = TypeVar("S")

Hook = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True)
class Options:
    """One constructor call's arguments: ``build`` for ``_config.build``,
    ``core`` for ``PoolCore.__init__``."""

    build: Dict[str, Any]
    core: Dict[str, Any]


def options(
    size: Optional[int] = None,
    maxsize: int = 100,
    name: Optional[str] = None,
    pre_create_num: int = 0,
    con_lifetime: float = 3600,
    autocommit: bool = True,
    *,
    pool_name: Optional[str] = None,
    timeout: float = 30.0,
    validation_interval: float = 0.5,
    keepalive_interval: Optional[float] = 60.0,
    max_idle: float = 600.0,
    leak_timeout: Optional[float] = None,
    reset_session: bool = False,
    configure: Optional[Hook] = None,
    check: Optional[Hook] = None,
    connection_factory: Optional[Callable[..., Any]] = None,
    events: Any = None,
    reset: Optional[Hook] = None,
    open: bool = True,
    max_waiting: Optional[int] = None,
    reconnect_timeout: float = 300.0,
    reconnect_failed: Optional[Hook] = None,
    kill_on_abandon: bool = True,
    **connect_kwargs: Any,
) -> Options:
    """The pools' parameters. The first six keep their pymysql-pool 0.5.0
    meaning and position; every other keyword not named here is a
    ``pymysql.connect()`` argument (``connect_kwargs``).
    ``connection_factory`` is the thread pool's alone."""
    return Options(
        build={
            "size": size,
            "maxsize": maxsize,
            "name": name,
            "pool_name": pool_name,
            "pre_create_num": pre_create_num,
            "con_lifetime": con_lifetime,
            "autocommit": autocommit,
            "timeout": timeout,
            "validation_interval": validation_interval,
            "keepalive_interval": keepalive_interval,
            "max_idle": max_idle,
            "leak_timeout": leak_timeout,
            "reset_session": reset_session,
            "configure": configure,
            "check": check,
            "connection_factory": connection_factory,
            "connect_kwargs": connect_kwargs,
        },
        core={
            "events": events,
            "reset": reset,
            "open": open,
            "max_waiting": max_waiting,
            "reconnect_timeout": reconnect_timeout,
            "reconnect_failed": reconnect_failed,
            "kill_on_abandon": kill_on_abandon,
        },
    )


def takes(
    parameters: Callable[P, Options],
) -> Callable[[Callable[[S, Options], None]], Callable[Concatenate[S, P], None]]:
    """Decorate ``__init__(self, opts: Options)`` so that it takes the
    parameters of :func:`options` itself (``parameters`` is that function)."""

    def decorate(init: Callable[[S, Options], None]) -> Callable[Concatenate[S, P], None]:
        def __init__(self: S, /, *args: P.args, **kwargs: P.kwargs) -> None:
            try:
                opts = parameters(*args, **kwargs)
            except TypeError as exc:  # the binding (too many, twice): the class's name, not options()'s
                raise TypeError(str(exc).replace(f"{parameters.__name__}()", f"{type(self).__name__}()", 1)) from None
            init(self, opts)

        signature = inspect.signature(parameters)
        self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        __init__.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[self_parameter, *signature.parameters.values()],
            return_annotation=None,
        )
        __init__.__doc__ = init.__doc__
        __init__.__qualname__ = init.__qualname__
        __init__.__module__ = init.__module__
        return __init__

    return decorate
