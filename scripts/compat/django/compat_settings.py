"""Settings for Django's own test apps (tests/runtests.py --settings=compat_settings):
the pool's backend, or the stock MySQL backend with PyMySQL installed as MySQLdb,
on databases named after COMPAT_DB_PREFIX (unique per run)."""

import os

if os.environ["COMPAT_STACK"] == "stock":
    import pymysql

    pymysql.install_as_MySQLdb()
    ENGINE = "django.db.backends.mysql"
    OPTIONS = {}
else:
    ENGINE = "pymysqlpool.django"
    # The server is shared: one idle connection kept per alias and process.
    OPTIONS = {"pool": {"maxsize": 8, "size": 1}}

_prefix = os.environ["COMPAT_DB_PREFIX"]


def _db(alias):
    return {
        "ENGINE": ENGINE,
        "HOST": os.environ.get("MYSQL_HOST", "127.0.0.1"),
        "PORT": os.environ.get("MYSQL_PORT", "3306"),
        "USER": os.environ.get("MYSQL_USER", "root"),
        "PASSWORD": os.environ.get("MYSQL_PWD", ""),
        "NAME": f"{_prefix}_{alias}",
        "OPTIONS": OPTIONS,
        "TEST": {"NAME": f"{_prefix}_test_{alias}"},
    }


DATABASES = {"default": _db("default"), "other": _db("other")}
SECRET_KEY = "django_tests_secret_key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = False
TEST_RUNNER = "compat_runner.RecordingRunner"
