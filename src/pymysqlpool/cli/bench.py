"""``pymysqlpool bench``: run the benchmark that lives in the source repository.

The benchmark compares this pool with raw PyMySQL and other pools, so it
needs packages a wheel install does not have; it ships in the repository as
``benchmarks/run.py`` and is not part of the installed package. This command
finds it (in the current directory, else next to this source checkout),
imports it and hands it every argument after ``bench``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, cast

from .output import print_error

__all__ = ["find_benchmark", "run"]

HELP = "run the benchmark from the source repository (arguments pass through)"
DESCRIPTION = """\
Run benchmarks/run.py from the source repository: the current directory's
benchmarks/ if there is one, else the one next to this source checkout. Every
argument after "bench" goes to the benchmark unchanged, so
"pymysqlpool bench --help" prints the benchmark's own options (for example
--quick, --scenario, --no-out, --host, --port, --user, --password)."""
EPILOG = """\
exit status:
  the benchmark's own (0 done; see its --help), or
  2  the benchmark is not here: installed from a wheel, it is not shipped;
     run this from a clone of the source repository"""

_RELATIVE = Path("benchmarks") / "run.py"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    # Only for the command list and "bench --help" without a benchmark:
    # main() hands the arguments after "bench" to the benchmark untouched.
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("args", nargs="*", metavar="ARG", help="passed to benchmarks/run.py")
    return parser


def _is_ours(path: Path) -> bool:
    # Do not run some other project's benchmarks/run.py found in the cwd.
    try:
        return path.is_file() and "pymysqlpool" in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def find_benchmark(cwd: Optional[Path] = None, source: Optional[Path] = None) -> Optional[Path]:
    """``benchmarks/run.py`` in ``cwd``, else in the checkout holding this file."""
    here = Path.cwd() if cwd is None else cwd
    # src/pymysqlpool/cli/bench.py -> parents[3] is the repository root.
    checkout = Path(__file__).resolve().parents[3] if source is None else source
    for root in (here, checkout):
        candidate = root / _RELATIVE
        if _is_ours(candidate):
            return candidate.resolve()
    return None


def _load_main(path: Path) -> Callable[[List[str]], int]:
    """Import ``benchmarks.run`` from ``path`` (it imports its siblings as ``benchmarks.*``)."""
    root = str(path.parent.parent)
    loaded = sys.modules.get("benchmarks")
    if loaded is not None:
        origin = getattr(loaded, "__file__", None)
        if origin is None or Path(origin).resolve().parent != path.parent:
            raise ImportError(f"another 'benchmarks' package is already imported (from {origin})")
    sys.path.insert(0, root)
    try:
        module = importlib.import_module("benchmarks.run")
    finally:
        try:
            sys.path.remove(root)
        except ValueError:
            pass
    return cast(Callable[[List[str]], int], module.main)


def run(parser: argparse.ArgumentParser, argv: Sequence[str]) -> int:
    rest = list(argv)
    path = find_benchmark()
    if path is None:
        if "-h" in rest or "--help" in rest:
            parser.print_help()
            return 0
        print_error(
            "bench",
            "the benchmark is not installed with the package: it ships in the source repository"
            " (benchmarks/run.py); run 'pymysqlpool bench' from a clone of it",
        )
        return 2
    try:
        bench_main = _load_main(path)
    except Exception as exc:
        print_error("bench", f"cannot load {path}: {type(exc).__name__}: {exc}")
        return 1
    if "-h" in rest or "--help" in rest:
        print(f"pymysqlpool bench runs {path} with the arguments after 'bench'; its options:\n", flush=True)
    try:
        return int(bench_main(rest) or 0)
    except SystemExit as exc:  # the benchmark's argparse: --help or a usage error
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
