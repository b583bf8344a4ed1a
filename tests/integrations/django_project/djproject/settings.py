"""A minimal Django project on pymysqlpool.django, for the integration tests.

The database name comes from PYMYSQLPOOL_DJANGO_DB (a throwaway database the
test creates); the server from MYSQL_HOST/MYSQL_PORT/MYSQL_USER/MYSQL_PWD.
"""

import os

SECRET_KEY = "integration-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = ["notes"]
ROOT_URLCONF = "djproject.urls"
MIDDLEWARE: list = []
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_DB = {
    "ENGINE": "pymysqlpool.django",
    "NAME": os.environ.get("PYMYSQLPOOL_DJANGO_DB", "test"),
    "USER": os.environ.get("MYSQL_USER", "root"),
    "PASSWORD": os.environ.get("MYSQL_PWD", ""),
    "HOST": os.environ.get("MYSQL_HOST", "127.0.0.1"),
    "PORT": os.environ.get("MYSQL_PORT", "3306"),
    "OPTIONS": {"pool": {"maxsize": 4, "ssl_disabled": True}},
    "CONN_MAX_AGE": 0,
}

DATABASES = {
    # The recommended set-up: each request borrows and gives back.
    "default": _DB,
    # Django keeps its connection (so its pool slot) across requests and
    # pings it at the start of each request.
    "persistent": {**_DB, "CONN_MAX_AGE": 60, "CONN_HEALTH_CHECKS": True},
    # One connection, never re-validated within the test: its counters are exact.
    "single": {
        **_DB,
        "OPTIONS": {"pool": {"maxsize": 1, "validation_interval": 60, "timeout": 0.5, "ssl_disabled": True}},
    },
    # COM_RESET_CONNECTION on every return: Django's session settings must be re-applied.
    "resetting": {**_DB, "OPTIONS": {"pool": {"maxsize": 1, "reset_session": True, "ssl_disabled": True}}},
}
