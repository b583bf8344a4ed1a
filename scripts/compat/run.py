#!/usr/bin/env python3
"""The compatibility tier: other projects' test suites through the pool.

SQLAlchemy's dialect compliance suite (every connection borrowed through the
``mysql+pymysqlpool://`` dialect) and Django's own test apps (ENGINE
``pymysqlpool.django``), each run beside the stock stack (``mysql+pymysql``;
``django.db.backends.mysql`` with PyMySQL installed as MySQLdb) in the same run,
against the server of MYSQL_HOST/MYSQL_PORT/MYSQL_USER/MYSQL_PWD.

Fails on any test that fails only through the pool unless docs/integrations.md
lists it under "Deliberate differences" (and on a listed one that no longer
differs: the list and the suites cannot drift). The suites' sources come from
PyPI at pinned versions, cached with their venv in .compat-cache/ (git-ignored),
so a second run downloads nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("COMPAT_CACHE", ROOT / ".compat-cache"))
DOC = ROOT / "docs" / "integrations.md"

SQLALCHEMY = "2.0.44"
DJANGO = "5.2.19"
DJANGO_APPS = [
    *("backends", "transactions", "transaction_hooks", "basic", "queries", "select_for_update", "model_fields"),
    *("expressions", "aggregation", "update", "delete", "get_or_create", "bulk_create", "db_utils"),
    *("raw_query", "lookup", "introspection", "schema"),
]
JOB_TIMEOUT = 600  # seconds, each suite run
# A run's databases carry its start time; older than this, the run has ended or
# been killed, and whatever it left (Django's test databases) is dropped.
STALE_AFTER = 2 * JOB_TIMEOUT + 600
# A class of SQLAlchemy's suite is named after the server, e.g. RowCountTest_mariadb+pymysql_10_11_19_0.
_SERVER_SUFFIX = re.compile(r"_(?:mysql|mariadb)\+\w+_[\d_]+$")

Outcomes = Dict[str, str]  # test id -> passed / failed / skipped


def log(message: str) -> None:
    print(f"[compat] {message}", flush=True)


# -- the deliberate differences, from the docs ------------------------------


def documented_differences(text: str) -> List[Tuple[str, str, str]]:
    """(suite, test pattern, reason) of each row of the table under the
    "Deliberate differences" heading of docs/integrations.md; ``*`` in a
    pattern stands for any text."""
    section = re.search(r"^#+ Deliberate differences.*?$(.*?)(?=^#+ |\Z)", text, re.M | re.S)
    if section is None:
        raise SystemExit(f"{DOC}: no 'Deliberate differences' section")
    rows = []
    for line in section.group(1).splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) == 3 and cells[0] in ("sqlalchemy", "django"):
            pattern = re.fullmatch(r"`([^`]+)`", cells[1])
            if pattern is None or not cells[2]:
                raise SystemExit(f"{DOC}: a difference needs a `test` and a reason: {line!r}")
            rows.append((cells[0], pattern.group(1), cells[2]))
    return rows


def matches(pattern: str, test: str) -> bool:
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), test) is not None


def pool_only_failures(pool: Outcomes, stock: Outcomes) -> List[str]:
    """Tests that failed through the pool but not through the stock stack, and
    tests the stock stack passed that the pool's run never reported."""
    failed = {test for test, outcome in pool.items() if outcome == "failed" and stock.get(test) != "failed"}
    lost = {test for test, outcome in stock.items() if outcome == "passed" and test not in pool}
    return sorted(failed | lost)


def judge(suite: str, pool_only: List[str], rows: List[Tuple[str, str, str]]) -> Tuple[List[str], List[str]]:
    """(unexplained pool-only failures, listed patterns that matched none)."""
    patterns = [pattern for name, pattern, _ in rows if name == suite]
    unexplained = [test for test in pool_only if not any(matches(p, test) for p in patterns)]
    stale = [p for p in patterns if not any(matches(p, test) for test in pool_only)]
    return unexplained, stale


# -- results ----------------------------------------------------------------


def junit_outcomes(path: Path) -> Outcomes:
    found: Outcomes = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        cls = _SERVER_SUFFIX.sub("", case.get("classname", "").rsplit(".", 1)[-1])
        kinds = {child.tag for child in case}
        outcome = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
        test = f"{cls}::{case.get('name')}"
        if found.get(test) != "failed":  # an error in teardown after a pass is a failure
            found[test] = outcome
    return found


def counts(outcomes: Outcomes) -> str:
    tally = {kind: 0 for kind in ("passed", "failed", "skipped")}
    for outcome in outcomes.values():
        tally["skipped" if outcome == "xfailed" else outcome] += 1
    return ", ".join(f"{n} {kind}" for kind, n in tally.items())


# -- set-up: a venv with the pinned versions, the suites' sources -------------


def _run(cmd: List[str], **kwargs: object) -> None:
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


def venv(django: str) -> Path:
    pymysql = metadata.version("PyMySQL")
    wanted = [f"SQLAlchemy=={SQLALCHEMY}", f"Django=={django}", f"PyMySQL=={pymysql}"]
    wanted += ["pytest", "pytest-xdist", "tblib"]
    where = CACHE / f"venv-{hashlib.sha1(' '.join(wanted).encode()).hexdigest()[:10]}"
    python = where / "bin" / "python"
    if not (where / ".complete").exists():
        log(f"creating {where.name}: {' '.join(wanted)}")
        _run([sys.executable, "-m", "venv", "--clear", str(where)])
        _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *wanted])
        (where / ".complete").touch()
    return python


def source(name: str, version: str) -> Path:
    """The sdist of ``name==version`` from the package index, unpacked (once)."""
    where = CACHE / "src" / f"{name.lower()}-{version}"
    if (where / ".complete").exists():
        return where
    downloads = CACHE / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    archives = sorted(downloads.glob(f"{name.lower()}-{version}.tar.gz"))
    if not archives:
        log(f"downloading the {name} {version} sdist")
        _run(
            [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
             "--no-binary", name, f"{name}=={version}", "-d", str(downloads)]
        )  # fmt: skip
        archives = sorted(downloads.glob(f"{name.lower()}-{version}.tar.gz"))
    with tarfile.open(archives[0]) as archive:
        top = Path(archive.getnames()[0]).parts[0]
        extract = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(where.parent / ".partial", **extract)  # type: ignore[arg-type]
    (where.parent / ".partial" / top).rename(where)
    (where / ".complete").touch()
    return where


# -- the suites -------------------------------------------------------------


@dataclass
class Job:
    suite: str
    stack: str
    cmd: List[str]
    cwd: Path
    env: Dict[str, str]
    results: Path
    log: Path
    seconds: float = 0.0
    outcomes: Outcomes = field(default_factory=dict)
    error: Optional[str] = None

    def run(self) -> Job:
        start = time.monotonic()
        with self.log.open("w") as out:
            try:
                subprocess.run(self.cmd, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                               timeout=JOB_TIMEOUT, check=False)  # fmt: skip
            except subprocess.TimeoutExpired:
                self.error = f"timed out after {JOB_TIMEOUT} s"
        self.seconds = time.monotonic() - start
        if self.results.exists():
            self.outcomes = (
                junit_outcomes(self.results) if self.suite == "sqlalchemy" else json.loads(self.results.read_text())
            )
        if not self.outcomes and self.error is None:
            self.error = "reported no test"
        return self


def server_env() -> Dict[str, str]:
    return {
        "MYSQL_HOST": os.environ.get("MYSQL_HOST", "127.0.0.1"),
        "MYSQL_PORT": os.environ.get("MYSQL_PORT", "3306"),
        "MYSQL_USER": os.environ.get("MYSQL_USER", "root"),
        "MYSQL_PWD": os.environ.get("MYSQL_PWD", ""),
    }


def run_prefix(base: str, now: float) -> str:
    """The database name prefix of one run: the base, its start second in hex, a random part."""
    return f"{base}_cp{int(now):08x}{secrets.token_hex(2)}"


def stale_databases(names: List[str], base: str, now: float) -> List[str]:
    """The databases of earlier runs (named by ``run_prefix``) started over STALE_AFTER ago."""
    shape = re.compile(re.escape(base) + r"_cp([0-9a-f]{8})[0-9a-f]{4}_")
    stale = []
    for name in names:
        match = shape.match(name)
        if match and int(match.group(1), 16) < now - STALE_AFTER:
            stale.append(name)
    return stale


def drop_stale_databases(base: str, now: float) -> None:
    """A run killed mid-way leaves Django's test databases behind; a server holding
    136 of them (44k tables) once slowed the next run's Django suite past its timeout."""
    import pymysql

    server = server_env()
    conn = pymysql.connect(
        host=server["MYSQL_HOST"], port=int(server["MYSQL_PORT"]), user=server["MYSQL_USER"],
        password=server["MYSQL_PWD"], connect_timeout=10,
    )  # fmt: skip
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW DATABASES")
            stale = stale_databases([row[0] for row in cur.fetchall()], base, now)
            for name in stale:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()
    if stale:
        log(f"dropped {len(stale)} databases of earlier runs that did not clean up")


def sqlalchemy_jobs(python: Path, work: Path) -> List[Job]:
    src = source("SQLAlchemy", SQLALCHEMY)
    server = server_env()
    auth = server["MYSQL_USER"] + (f":{server['MYSQL_PWD']}" if server["MYSQL_PWD"] else "")
    where = f"{auth}@{server['MYSQL_HOST']}:{server['MYSQL_PORT']}/{os.environ.get('MYSQL_DATABASE', 'test')}"
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{ROOT / 'src'}", "PYTHONDONTWRITEBYTECODE": "1"}
    jobs = []
    # The server is shared (max_connections 151 here): the pool keeps one idle connection per URL.
    for stack, scheme, extra in (("pool", "mysql+pymysqlpool", "&size=1&maxsize=20"), ("stock", "mysql+pymysql", "")):
        results = work / f"sqlalchemy-{stack}.xml"
        cmd = [str(python), "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider", f"--junitxml={results}",
               "--dburi", f"{scheme}://{where}?charset=utf8mb4{extra}"]  # fmt: skip
        jobs.append(Job("sqlalchemy", stack, cmd, HERE / "sqla", env, results, work / f"sqlalchemy-{stack}.log"))
    return jobs


def django_jobs(python: Path, work: Path, version: str, prefix: str) -> List[Job]:
    tests = source("Django", version) / "tests"
    jobs = []
    for stack in ("pool", "stock"):
        results = work / f"django-{version}-{stack}.json"
        env = {
            **os.environ,
            **server_env(),
            "PYTHONPATH": f"{HERE / 'django'}{os.pathsep}{ROOT / 'src'}",
            "PYTHONDONTWRITEBYTECODE": "1",
            "COMPAT_STACK": stack,
            # Django creates <prefix>_test_default, _other and a clone per worker: unique per run.
            "COMPAT_DB_PREFIX": f"{prefix}_{stack[0]}",
            "COMPAT_RESULTS": str(results),
        }
        cmd = [str(python), "-W", "ignore", "runtests.py", "--settings=compat_settings", "--parallel", "2",
               "--noinput", *DJANGO_APPS]  # fmt: skip
        jobs.append(Job(f"django {version}", stack, cmd, tests, env, results, work / f"django-{version}-{stack}.log"))
    return jobs


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("sqlalchemy", "django"), help="run one suite")
    parser.add_argument(
        "--django", default=DJANGO, metavar="VERSION", help=f"Django release to test (default {DJANGO}; e.g. 4.2.27)"
    )
    args = parser.parse_args(argv)
    start = time.monotonic()
    rows = documented_differences(DOC.read_text())
    work = CACHE / "runs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    work.mkdir(parents=True)
    python = venv(args.django)
    # Database names from MYSQL_DATABASE, so developers sharing a server do not collide.
    base = os.environ.get("MYSQL_DATABASE", "test")
    drop_stale_databases(base, time.time())
    prefix = run_prefix(base, time.time())
    jobs: List[Job] = []
    if args.only in (None, "sqlalchemy"):
        jobs += sqlalchemy_jobs(python, work)
    if args.only in (None, "django"):
        jobs += django_jobs(python, work, args.django, prefix)
    # The server does most of the work (DDL): the stacks run side by side.
    with ThreadPoolExecutor(len(jobs)) as workers:
        done = list(workers.map(Job.run, jobs))
    ok = True
    lines = []
    for suite in dict.fromkeys(job.suite for job in done):
        pool, stock = (next(j for j in done if j.suite == suite and j.stack == s) for s in ("pool", "stock"))
        for job in (pool, stock):
            if job.error:
                ok = False
                log(f"{suite} {job.stack}: {job.error} (log: {job.log})")
        pool_only = pool_only_failures(pool.outcomes, stock.outcomes)
        unexplained, stale = judge(suite.split()[0], pool_only, rows)
        for test in unexplained:
            log(f"{suite}: fails only through the pool: {test}")
        for pattern in stale:
            log(f"{suite}: listed in docs/integrations.md but no longer differs: {pattern}")
        ok = ok and not unexplained and not stale
        listed = len(pool_only) - len(unexplained)
        seconds = max(pool.seconds, stock.seconds)
        lines.append(
            f"{suite}: pool {counts(pool.outcomes)} ({listed} listed as deliberate, {len(unexplained)} unexplained);"
            f" stock {counts(stock.outcomes)}; {seconds:.0f} s"
        )
    for line in lines:
        log(line)
    log(f"{'passed' if ok else 'FAILED'} in {time.monotonic() - start:.0f} s (logs: {work})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
