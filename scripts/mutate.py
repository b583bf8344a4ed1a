"""Mutation testing of the pool's core: does the test suite notice a small bug?

Usage (through ``./dev mutate``):

    scripts/mutate.py [--files pool.py,...] [--sample N] [--seed S] [--jobs J]
                      [--timeout SECONDS] [--server] [--tests PATH,...] [--list] [--only ID,...]

Each mutant is one small change to one of ``_core.py`` and its plan modules
(``_borrowing.py``, ``_dialing.py``, ``_returning.py``, ``_disposal.py``,
``_upkeep.py``, ``_control.py``), ``pool.py``, ``_driver.py``, ``_waiting.py``
(a comparison flipped, ``and``/``or`` swapped, ``+=``/``-=`` swapped, a
``not`` dropped, a constant changed, a statement deleted), written
to a copy of the tree in a temporary directory; the fast tier (and with
``--server`` the server tier) runs against the copy with ``-x``. A mutant is
*killed* when a test fails, *survived* when all pass, *timeout* when the run
outlives ``--timeout`` (counted as killed: the suite noticed something). The
table lists every mutant; the survivors are the tests still to write.

Not part of ``./dev test``: a full run takes tens of minutes.
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path("src") / "pymysqlpool"
DEFAULT_FILES = [
    "_core.py",
    "_borrowing.py",
    "_dialing.py",
    "_returning.py",
    "_disposal.py",
    "_upkeep.py",
    "_control.py",
    "pool.py",
    "_driver.py",
    "_waiting.py",
]

_FLIP = {
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}


@dataclass
class Mutant:
    ident: int
    file: str
    line: int
    what: str
    outcome: str = ""
    seconds: float = 0.0
    by: str = ""  # the first test that failed


# A mutation site: (line, description, function applying it to the node in a fresh tree).
Site = Tuple[int, str, Callable[[ast.AST], None]]


def _is_logging(node: ast.AST) -> bool:
    """Calls whose only effect is a log line: mutating them proves nothing."""
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        func = node.value.func
        return isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "logger"
    return False


def _sites(node: ast.AST, in_function: bool) -> Iterator[Tuple[ast.AST, str, Callable[[ast.AST], None]]]:
    """Every mutation a node offers, as (node, description, apply)."""
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            flipped = _FLIP.get(type(op))
            if flipped is not None:

                def flip(n: ast.AST, i: int = i, flipped: type = flipped) -> None:
                    assert isinstance(n, ast.Compare)
                    n.ops[i] = flipped()

                yield node, f"{type(op).__name__} -> {flipped.__name__}", flip
    elif isinstance(node, ast.BoolOp):

        def swap(n: ast.AST) -> None:
            assert isinstance(n, ast.BoolOp)
            n.op = ast.Or() if isinstance(n.op, ast.And) else ast.And()

        yield node, f"{type(node.op).__name__} -> {'Or' if isinstance(node.op, ast.And) else 'And'}", swap
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield node, "drop `not`", lambda n: setattr(n, "op", ast.UAdd())  # +bool(x) == x for bools
    elif isinstance(node, ast.AugAssign) and isinstance(node.op, (ast.Add, ast.Sub)):

        def negate(n: ast.AST) -> None:
            assert isinstance(n, ast.AugAssign)
            n.op = ast.Sub() if isinstance(n.op, ast.Add) else ast.Add()

        yield node, "+= -> -=" if isinstance(node.op, ast.Add) else "-= -> +=", negate
    elif isinstance(node, ast.Constant) and not isinstance(node.value, str) and in_function:
        value = node.value
        if isinstance(value, bool):
            yield node, f"{value} -> {not value}", lambda n: setattr(n, "value", not value)
        elif isinstance(value, int):
            yield node, f"{value} -> {value + 1}", lambda n: setattr(n, "value", value + 1)
        elif isinstance(value, float):
            new = 0.0 if value else 1.0
            yield node, f"{value} -> {new}", lambda n: setattr(n, "value", new)
    deletable = isinstance(node, (ast.Expr, ast.Assign, ast.AugAssign, ast.Return)) and not _is_logging(node)
    docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    if in_function and deletable and not docstring:
        yield node, f"delete `{ast.unparse(node)[:50]}`", lambda n: setattr(n, "_delete", True)


def _walk(tree: ast.AST) -> Iterator[Tuple[ast.AST, str, Callable[[ast.AST], None]]]:
    """Sites in a fixed order, so the k-th site of a fresh parse is the same one."""

    def visit(node: ast.AST, in_function: bool) -> Iterator[Tuple[ast.AST, str, Callable[[ast.AST], None]]]:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name == "__repr__":
                return
            in_function = True
        yield from _sites(node, in_function)
        for child in ast.iter_child_nodes(node):
            yield from visit(child, in_function)

    yield from visit(tree, False)


class _Deleter(ast.NodeTransformer):
    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if isinstance(block, list) and any(getattr(s, "_delete", False) for s in block):
                kept = [s for s in block if not getattr(s, "_delete", False)]
                setattr(node, field, kept or [ast.Pass()])
        return node


def enumerate_mutants(files: List[str]) -> List[Mutant]:
    mutants: List[Mutant] = []
    for name in files:
        tree = ast.parse((ROOT / PACKAGE / name).read_text())
        for node, what, _ in _walk(tree):
            mutants.append(Mutant(len(mutants) + 1, name, getattr(node, "lineno", 0), what))
    return mutants


def mutated_source(mutant: Mutant, files: List[str]) -> str:
    """The mutant's file: the original parsed afresh, one site changed, unparsed."""
    first = next(m.ident for m in enumerate_mutants(files) if m.file == mutant.file)
    tree = ast.parse((ROOT / PACKAGE / mutant.file).read_text())
    for index, (node, _, apply) in enumerate(_walk(tree)):
        if first + index == mutant.ident:
            apply(node)
            break
    tree = _Deleter().visit(copy.deepcopy(tree))
    return ast.unparse(ast.fix_missing_locations(tree))


def _copy_tree(into: Path) -> None:
    shutil.copytree(ROOT / "src", into / "src")
    shutil.copytree(ROOT / "tests", into / "tests", ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
    # The server tier imports the benchmark package (the bench account test)
    # and runs the README's quick start.
    shutil.copytree(ROOT / "benchmarks", into / "benchmarks", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "docs", into / "docs")
    shutil.copy(ROOT / "README.md", into / "README.md")
    shutil.copy(ROOT / "pyproject.toml", into / "pyproject.toml")


def _run_tests(tree: Path, tiers: List[str], timeout: float) -> Tuple[str, float, str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", *tiers, "-x", "-q", "-rfE", "-p", "no:cacheprovider"]
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - started, ""
    elapsed = time.monotonic() - started
    if done.returncode == 0:
        return "survived", elapsed, ""
    failed = [line.split()[1] for line in done.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    return "killed", elapsed, failed[0] if failed else f"pytest exit {done.returncode}"


def _check_copy_is_imported(tree: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    where = subprocess.run(
        [sys.executable, "-c", "import pymysqlpool; print(pymysqlpool.__file__)"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not where.startswith(str(tree)):
        sys.exit(f"mutate: the tests would import {where}, not the mutated copy")


def run_mutant(mutant: Mutant, files: List[str], tiers: List[str], timeout: float) -> Mutant:
    with tempfile.TemporaryDirectory(prefix=f"mutant{mutant.ident}-") as tmp:
        tree = Path(tmp)
        _copy_tree(tree)
        (tree / PACKAGE / mutant.file).write_text(mutated_source(mutant, files))
        mutant.outcome, mutant.seconds, mutant.by = _run_tests(tree, tiers, timeout)
    return mutant


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev mutate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", default=",".join(DEFAULT_FILES), help="modules of src/pymysqlpool to mutate")
    parser.add_argument("--sample", type=int, default=0, help="run N mutants picked at random (0: all)")
    parser.add_argument("--seed", type=int, default=1, help="seed for --sample")
    parser.add_argument("--only", default="", help="comma-separated mutant ids to run")
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested at once")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one mutant's test run may take")
    parser.add_argument("--server", action="store_true", help="run the server tier too (needs the MariaDB)")
    parser.add_argument(
        "--tests", default="", help="comma-separated test paths to run instead of the tiers (a first, quick pass)"
    )
    parser.add_argument("--list", action="store_true", help="list the mutants without running them")
    parser.add_argument("--show", type=int, default=0, help="print mutant N's source diff and exit")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress, even into a file

    files = [f.strip() for f in args.files.split(",") if f.strip()]
    mutants = enumerate_mutants(files)
    if args.show:
        (mutant,) = [m for m in mutants if m.ident == args.show]
        import difflib

        original = ast.unparse(ast.parse((ROOT / PACKAGE / mutant.file).read_text()))
        diff = difflib.unified_diff(original.splitlines(), mutated_source(mutant, files).splitlines(), lineterm="")
        print("\n".join(diff))
        return 0
    if args.only:
        wanted = {int(x) for x in args.only.split(",")}
        mutants = [m for m in mutants if m.ident in wanted]
    elif args.sample:
        mutants = sorted(
            random.Random(args.seed).sample(mutants, min(args.sample, len(mutants))), key=lambda m: m.ident
        )
    if args.list:
        for m in mutants:
            print(f"{m.ident:5}  {m.file}:{m.line:<5} {m.what}")
        return 0

    tiers = ["tests/fast", "tests/server"] if args.server else ["tests/fast"]
    if args.tests:
        tiers = [t.strip() for t in args.tests.split(",") if t.strip()]
    with tempfile.TemporaryDirectory(prefix="mutant-baseline-") as tmp:
        _copy_tree(Path(tmp))
        _check_copy_is_imported(Path(tmp))
        outcome, seconds, _ = _run_tests(Path(tmp), tiers, args.timeout)
        if outcome != "survived":
            sys.exit(f"mutate: the unmutated tree does not pass ({outcome} after {seconds:.0f} s); fix that first")
    print(f"baseline passes in {seconds:.0f} s; {len(mutants)} mutants, {args.jobs} at a time", flush=True)

    done: List[Mutant] = []
    with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        for mutant in pool.map(lambda m: run_mutant(m, files, tiers, args.timeout), mutants):
            done.append(mutant)
            where = f"{mutant.file}:{mutant.line}"
            print(f"{mutant.ident:5}  {mutant.outcome:8} {mutant.seconds:6.1f}s  {where}  {mutant.what}  {mutant.by}")

    survivors = [m for m in done if m.outcome == "survived"]
    print()
    print("| id | where | mutation | outcome | seconds | first failing test |")
    print("| --- | --- | --- | --- | --- | --- |")
    for m in done:
        what = m.what.replace("|", "/")
        print(f"| {m.ident} | {m.file}:{m.line} | {what} | {m.outcome} | {m.seconds:.0f} | {m.by} |")
    killed = len(done) - len(survivors)
    print(
        f"\n{killed} of {len(done)} mutants killed; {len(survivors)} survived"
        + (f": {', '.join(str(m.ident) for m in survivors)}" if survivors else "")
    )
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
