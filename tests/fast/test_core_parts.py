"""The core's plans by concern (``_core.py``'s docstring): each module's
functions are bound as ``PoolCore`` methods, and each module's docstring
names the ``Books`` verbs it calls -- no more, no fewer."""

from __future__ import annotations

import ast
import inspect
import re
from types import ModuleType

import pytest

from pymysqlpool import _borrowing, _control, _dialing, _disposal, _returning, _upkeep
from pymysqlpool._books import Books
from pymysqlpool._core import PoolCore

PARTS = (_borrowing, _dialing, _returning, _disposal, _upkeep, _control)
VERBS = {name for name, member in vars(Books).items() if inspect.isfunction(member) and not name.startswith("_")}


def _functions(part: ModuleType) -> dict[str, object]:
    return {
        name: member
        for name, member in vars(part).items()
        if inspect.isfunction(member) and member.__module__ == part.__name__ and not name.startswith("_")
    }


def _books_verbs_called(part: ModuleType) -> set[str]:
    """Books verbs the module calls, on ``self._books`` or a local ``books``."""
    called = set()
    for node in ast.walk(ast.parse(inspect.getsource(part))):
        if not isinstance(node, ast.Attribute) or node.attr not in VERBS:
            continue
        base = node.value
        if (isinstance(base, ast.Name) and base.id == "books") or (
            isinstance(base, ast.Attribute) and base.attr == "_books"
        ):
            called.add(node.attr)
    return called


def _books_verbs_documented(part: ModuleType) -> set[str]:
    """The ``names`` of the docstring's "the Books verbs ...;" clause."""
    doc = part.__doc__ or ""
    found = re.search(r"the Books verbs? (.*?);", doc, re.S)
    assert found, f"{part.__name__}: no 'May touch: the Books verbs ...;' in its docstring"
    return set(re.findall(r"``(\w+)``", found.group(1)))


@pytest.mark.parametrize("part", PARTS, ids=lambda part: part.__name__)
def test_every_function_is_the_core_method_of_its_name(part: ModuleType) -> None:
    functions = _functions(part)
    assert functions and set(part.__all__) == set(functions)
    for name, function in functions.items():
        assert vars(PoolCore).get("_" + name) is function, name


def test_no_core_method_is_bound_from_two_parts() -> None:
    bound = [name for part in PARTS for name in _functions(part)]
    assert len(bound) == len(set(bound))


@pytest.mark.parametrize("part", PARTS, ids=lambda part: part.__name__)
def test_the_docstring_names_the_books_verbs_the_module_calls(part: ModuleType) -> None:
    assert "Part of the core" in (part.__doc__ or "")
    documented = _books_verbs_documented(part)
    assert documented <= VERBS, documented - VERBS
    assert _books_verbs_called(part) == documented
