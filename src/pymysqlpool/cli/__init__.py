"""The ``pymysqlpool`` command line (``python -m pymysqlpool``).

Standard library and PyMySQL only. Commands live in one module each:
:mod:`.check`, :mod:`.demo`, :mod:`.bench`; :mod:`.settings` merges the
connection settings and :mod:`.output` formats what is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import logging
import os
import platform
import sys
from typing import Iterator, List, Optional, Sequence

from .._version import __version__
from . import bench, check, demo
from .output import describe_error, print_error
from .settings import UsageError, add_connection_arguments

__all__ = ["build_parser", "main"]

PROG = "pymysqlpool"
EPILOG = """\
exit status (all commands):
  0    success (check: connected, warnings allowed; demo: verification passed)
  1    failure: cannot connect, a query failed, or the demo's verification failed;
       the reason is one line on stderr: "pymysqlpool <command>: error: <reason>"
  2    usage error (bad flag, bad --url, bench run outside the source repository)
  130  interrupted (Ctrl-C)

connection settings: flag > --url > MYSQL_HOST, MYSQL_PORT, MYSQL_USER,
MYSQL_PWD, MYSQL_DATABASE > defaults (127.0.0.1, 3306, root, no password, test).
The password is never printed. Run "pymysqlpool <command> --help" for details."""


def _version_text() -> str:
    # pymysql.__version__ mimics mysqlclient's; the distribution has the real one.
    try:
        driver = f"PyMySQL {importlib.metadata.version('PyMySQL')}"
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a dependency
        driver = "PyMySQL (version unknown)"
    return f"{PROG} {__version__} ({driver}, Python {platform.python_version()})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A thread-safe connection pool for PyMySQL: check a server, demonstrate the pool, benchmark it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version_text())
    common = argparse.ArgumentParser(add_help=False)
    add_connection_arguments(common)
    common.add_argument(
        "-v", "--verbose", action="count", default=0, help="log the pool's activity on stderr (-vv: debug)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    check.add_parser(subparsers, [common])
    demo.add_parser(subparsers, [common])
    bench_parser = bench.add_parser(subparsers)
    bench_parser.set_defaults(bench_parser=bench_parser)
    return parser


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


@contextlib.contextmanager
def _logging_to_stderr(verbosity: int) -> Iterator[None]:
    """With -v, show the pool's log on stderr for the duration of the command."""
    if not verbosity:
        yield
        return
    logger = logging.getLogger("pymysqlpool")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)
    try:
        yield
    finally:
        # main() may run in-process (tests, embedding): leave logging as found.
        logger.removeHandler(handler)
        logger.setLevel(level)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args_list: List[str] = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if args_list and args_list[0] == "bench":
        # Everything after "bench" belongs to the benchmark, --help included.
        sub = parser.parse_args(["bench"])
        return bench.run(sub.bench_parser, args_list[1:])
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help, --version, or a usage error (argparse printed it)
        return _exit_code(exc)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print_error("", "a command is required: check, demo or bench (see --help)")
        return 2
    try:
        with _logging_to_stderr(args.verbose):
            return int(args.run(args))
    except UsageError as exc:
        print_error(args.command, str(exc))
        return 2
    except KeyboardInterrupt:
        print_error(args.command, "interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (`pymysqlpool demo | head`): a normal way for
        # output to end. Point stdout at /dev/null so the flush at exit cannot
        # fail again and print a traceback.
        _discard_stdout()
        return 0
    except Exception as exc:
        # Driver and pool errors are expected failures: one line, no traceback.
        import pymysql

        from ..errors import PoolError

        if isinstance(exc, (pymysql.MySQLError, PoolError, OSError)):
            print_error(args.command, describe_error(exc, getattr(args, "resolved_password", "")))
            return 1
        raise


def _discard_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (captured in-process): nothing will flush to the pipe
    finally:
        os.close(devnull)
