"""The Driver protocol (``_driving.Driver``) names exactly what the core asks
of a driver: both driver modules define every member, and the core calls no
other driver function."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("module", ["_driver", "_adriver"])
def test_each_driver_module_is_a_driver(module: str) -> None:
    """Every member of the Driver protocol, with the same positional parameters."""
    import importlib
    import inspect

    from pymysqlpool._driving import Driver

    if module == "_adriver":
        pytest.importorskip("aiomysql")
    driver = importlib.import_module(f"pymysqlpool.{module}")
    assert isinstance(driver, Driver)
    members = [name for name, value in vars(Driver).items() if inspect.isfunction(value) and not name.startswith("_")]
    assert len(members) == 15
    for name in members:
        wanted = len(inspect.signature(getattr(Driver, name)).parameters) - 1  # without self
        assert len(inspect.signature(getattr(driver, name)).parameters) == wanted, name


def test_the_core_calls_only_what_the_driver_protocol_names() -> None:
    import ast
    import inspect

    from pymysqlpool import _borrowing, _closing, _control, _core, _dialing, _disposal, _returning, _upkeep
    from pymysqlpool._driving import Driver

    # The core and its parts (the plans by concern: see _core's docstring).
    parts = (_core, _borrowing, _closing, _control, _dialing, _disposal, _returning, _upkeep)
    called = set()
    for node in ast.walk(ast.parse("\n".join(inspect.getsource(part) for part in parts))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, (ast.Attribute, ast.Name)):
            base = node.value.attr if isinstance(node.value, ast.Attribute) else node.value.id
            if base in ("_drv", "drv"):
                called.add(node.attr)
    named = {name for name in vars(Driver) if not name.startswith("_")}
    assert called == named
