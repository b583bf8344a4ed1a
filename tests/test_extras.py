"""Each optional module, imported without its extra installed, says which
extra to install."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("module", "needs", "extra"),
    [
        ("pymysqlpool.prometheus", "prometheus_client", "prometheus"),
        ("pymysqlpool.opentelemetry", "opentelemetry", "opentelemetry"),
        ("pymysqlpool.sqlalchemy", "sqlalchemy", "sqlalchemy"),
    ],
)
def test_missing_dependency_names_the_extra(
    module: str, needs: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    importlib.import_module(module)  # installed here: the real import works
    for name in [n for n in sys.modules if n == needs or n.startswith(needs + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, needs, None)
    monkeypatch.delitem(sys.modules, module)
    with pytest.raises(ImportError, match=rf"pymysql-pool\[{extra}\]"):
        importlib.import_module(module)


def test_importing_pymysqlpool_imports_no_optional_dependency() -> None:
    optional = ["prometheus_client", "opentelemetry", "sqlalchemy", "django"]
    code = f"import sys, pymysqlpool; print([m for m in {optional!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
