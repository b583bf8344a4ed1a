"""SQLAlchemy's dialect compliance suite (README.dialects.rst): its pytest plugin,
and the pool's dialects registered by name (the tier runs the project from
src/, where the package's entry points are not installed)."""

import pytest
from sqlalchemy.dialects import registry

registry.register("mysql.pymysqlpool", "pymysqlpool.sqlalchemy", "PoolDialect")
registry.register("mariadb.pymysqlpool", "pymysqlpool.sqlalchemy", "MariaDBPoolDialect")

pytest.register_assert_rewrite("sqlalchemy.testing.assertions")

from sqlalchemy.testing.plugin.pytestplugin import *  # noqa: E402,F403
