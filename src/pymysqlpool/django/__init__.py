"""Django database backend with a pymysqlpool pool: ``pip install 'pymysql-pool[django]'``.

::

    DATABASES = {
        "default": {
            "ENGINE": "pymysqlpool.django",
            "NAME": "app", "USER": "app", "PASSWORD": "...", "HOST": "127.0.0.1", "PORT": 3306,
            "OPTIONS": {"pool": {"maxsize": 20, "pre_create_num": 2}},
            "CONN_MAX_AGE": 0,
        }
    }

Django's MySQL backend, with PyMySQL standing in for mysqlclient and every
connection borrowed from a pool (one per settings alias and connection
parameters, per process) instead of dialled. ``OPTIONS["pool"]`` holds
ConnectionPool keywords (``True`` or absent: the defaults). With
``CONN_MAX_AGE = 0`` a request borrows on its first query and gives the
connection back when it ends (``request_finished`` closes old connections).
See docs/integrations.md for ``CONN_MAX_AGE`` and ``CONN_HEALTH_CHECKS``.
"""

from __future__ import annotations

from .pools import close_pools, pool_for_alias

__all__ = ["close_pools", "pool_for_alias"]
