#!/usr/bin/env bash
# Build the wheel and sdist, install the wheel into a throwaway venv, run the
# README's quick start with it: catches files missing from the package.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m build -q --outdir "$work/dist" . >/dev/null
ls "$work"/dist/*.whl "$work"/dist/*.tar.gz >/dev/null
"$python" -m venv "$work/venv"
ls "$work"/dist/pymysql_pool-*.whl >/dev/null  # the distribution is pymysql-pool, the module pymysqlpool
pip=("$work/venv/bin/python" -m pip install -q --disable-pip-version-check)
# The dependency from the index, then our package by its published name from
# the built wheel only: never a pymysql-pool of the same version from an index.
"${pip[@]}" "PyMySQL>=1.0"
"${pip[@]}" --no-index --find-links "$work/dist" "pymysql-pool==$("$python" -c 'import sys; sys.path.insert(0, "src"); from pymysqlpool._version import __version__; print(__version__)')"
cd "$work"  # not the checkout: import the installed copy
"$work/venv/bin/python" - <<'PY'
import os, pathlib, pymysqlpool
assert "site-packages" in pymysqlpool.__file__, pymysqlpool.__file__
from importlib.metadata import version
assert version("pymysql-pool") == pymysqlpool.__version__, (version("pymysql-pool"), pymysqlpool.__version__)
assert (pathlib.Path(pymysqlpool.__file__).parent / "py.typed").exists(), "py.typed missing"
from pymysqlpool import ConnectionPool

pool = ConnectionPool(host='localhost', user='root', password=os.environ.get('MYSQL_PWD', ''),
                      database='test', maxsize=10, pre_create_num=2, pool_name='mypool')
conn = pool.get_conn()
cursor = conn.cursor()
cursor.execute('SELECT 1')
result = cursor.fetchone()
cursor.close()
pool.release(conn)
assert result == (1,), result
print("wheel", pymysqlpool.__version__, "quick start OK:", result)
PY
"$work/venv/bin/pymysqlpool" --help >/dev/null
