"""Every Python code block in the README and docs/ runs against the test
server (MYSQL_HOST/MYSQL_PORT), so the documentation cannot drift from the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from support.doc_blocks import CONNECTS, HOST, ROOT, blocks, localize

BLOCKS = [pytest.param(path.name, code, id=f"{path.name}:{line}") for path, line, code in blocks()]

# A ``print(...)  # what it prints`` line is a promise too (a count, a stats
# key, a message): what each one prints, keyed by the doc and the line as
# written. "=" the printed line exactly, "in" a part of it; one entry per
# print (a print in a loop: one per turn). cluster.md is left to its own tests.
PRINTED: dict[tuple[str, str], list[tuple[str, str]]] = {
    ("README.md", "print(pool.available_num, pool.total_num)   # 1 idle, 1 open"): [("=", "1 1")],
    ("README.md", "print(cur.fetchall())                          # ((2,),)"): [("=", "((2,),)")],
    ("README.md", 'print(pool.get_stats()["borrowed"])   # 0: back in the pool'): [("=", "0")],
    ("guide.md", "print(pool.get_stats()['rollbacks_on_return'])   # 1"): [("=", "1")],
    ("guide.md", "print(pool.get_stats()['rollbacks_on_return'])   # 2"): [("=", "2")],
    ("guide.md", "print(pool.get_stats()['borrow_timeouts'])   # 1"): [("=", "1")],
    ("guide.md", "print(pool.check())                 # 0: every idle connection answered"): [("=", "0")],
    ("guide.md", "print(pool.close(timeout=5))        # 0 borrowed connections had to be forced"): [("=", "0")],
    ("guide.md", "print(stats['open'], stats['idle'], stats['connections_made'])   # 20 20 20"): [("=", "20 20 20")],
    ("guide.md", "print(len(opened))   # 1"): [("=", "1")],
    ("guide.md", "print(cur.db_query('SELECT v FROM guide_050 ORDER BY v'))   # [{'v': 1}, {'v': 2}]"): [
        ("=", "[{'v': 1}, {'v': 2}]")
    ],
    ("guide.md", "print(stats['borrows'], stats['connections_made'], stats['open'])   # 10 1 1"): [("=", "10 1 1")],
    ("migration.md", "print(pool.available_num, pool.total_num)                      # 3 3"): [("=", "3 3")],
    ("parameters.md", "print(exc)      # port must be an int, got str / read_timeout must be > 0 ..."): [
        ("in", "port must be an int, got str"),
        ("in", "read_timeout must be > 0"),
        ("in", "connect_timeout must be > 0"),
    ],
    ("parameters.md", "print(exc)          # ... use maxsize="): [("in", "use maxsize=")],
    ("parameters.md", "print(exc)          # pre_create_num (3) must not exceed maxsize (2)"): [
        ("in", "pre_create_num (3) must not exceed maxsize (2)")
    ],
    ("parameters.md", "print(exc)          # unexpected keyword argument(s) 'hots'"): [
        ("in", "unexpected keyword argument(s) 'hots'")
    ],
}
COMMENTED_PRINT = re.compile(r"^(?P<indent>\s*)print\((?P<args>.*)\)(?P<comment>\s+#.*)$")


def tag_prints(doc: str, code: str) -> tuple[str, dict[str, list[tuple[str, str]]]]:
    """``code`` with each listed print tagged ``@@n@@``, and what each tag must print."""
    lines, wanted = [], {}
    for n, line in enumerate(code.splitlines()):
        match = COMMENTED_PRINT.match(line)
        if match and (doc, line.strip()) in PRINTED:
            wanted[f"@@{n}@@"] = PRINTED[(doc, line.strip())]
            line = f"{match['indent']}print('@@{n}@@', {match['args']}){match['comment']}"
        lines.append(line)
    return "\n".join(lines) + "\n", wanted


def test_every_commented_print_says_what_it_prints() -> None:
    listed = {
        (path.name, line.strip())
        for path, _, code in blocks()
        if path.name != "cluster.md"
        for line in code.splitlines()
        if COMMENTED_PRINT.match(line)
    }
    assert listed == set(PRINTED), (
        f"not in PRINTED: {sorted(listed - set(PRINTED))}; no longer in the docs: {sorted(set(PRINTED) - listed)}"
    )


def test_docs_have_python_examples() -> None:
    assert len(BLOCKS) >= 5, "the docs lost their examples"


def test_every_connecting_block_names_its_server() -> None:
    """A block that connects without a host literal could not be pointed at MYSQL_HOST."""
    unnamed = [f"{p.name}:{line}" for p, line, code in blocks() if CONNECTS.search(code) and not HOST.search(code)]
    assert not unnamed, f"blocks connecting to an implicit server: {unnamed}"


def test_localize_points_blocks_at_the_test_server() -> None:
    code = "ConnectionPool(host='127.0.0.1', user='root')\nconfig = {'host': 'localhost', 'user': 'root'}\n"
    assert localize(code, {"host": "db.test", "port": 13306}) == (
        "ConnectionPool(host='db.test', port=13306, user='root')\n"
        "config = {'host': 'db.test', 'port': 13306, 'user': 'root'}\n"
    )


@pytest.mark.server
@pytest.mark.parametrize(("doc", "code"), BLOCKS)
def test_doc_block_runs(doc: str, code: str, tmp_path: Path) -> None:
    tagged, wanted = tag_prints(doc, code)
    done = subprocess.run(
        [sys.executable, "-c", localize(tagged)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"block failed:\n{code}\n--- stderr ---\n{done.stderr[-3000:]}"
    for tag, expected in wanted.items():
        printed = [line[len(tag) + 1 :] for line in done.stdout.splitlines() if line.startswith(tag + " ")]
        assert len(printed) == len(expected), (tag, printed, expected)
        for (how, text), line in zip(expected, printed):
            assert (line == text) if how == "=" else (text in line), (
                f"{doc}: printed {line!r}, the comment says {text!r}"
            )


def test_stats_reference_lists_every_key() -> None:
    from pymysqlpool.stats import COUNTERS, GAUGES

    text = (ROOT / "docs" / "stats.md").read_text()
    missing = [key for key in [*GAUGES, *COUNTERS] if f"`{key}`" not in text]
    assert not missing, f"docs/stats.md does not describe {missing}"


def test_readme_connect_cost_agrees_with_the_benchmark() -> None:
    """The README's "~N ms PyMySQL spends ... on every connect" is the measured row of docs/benchmarks.md."""
    import re

    claimed = re.search(r"~(\d+) ms PyMySQL 1\.2 spends building a TLS context", (ROOT / "README.md").read_text())
    measured = re.search(
        r"^\| raw PyMySQL, defaults \(TLS context per connect\)\s*\|\s*([\d.]+)",
        (ROOT / "docs" / "benchmarks.md").read_text(),
        re.M,
    )
    assert claimed and measured, "the README claim or the benchmark row moved"
    assert abs(float(claimed.group(1)) - float(measured.group(1))) <= 0.25 * float(measured.group(1))


def test_readme_signature_lists_every_pool_parameter() -> None:
    import inspect
    import re

    from pymysqlpool import ConnectionPool

    text = (ROOT / "README.md").read_text()
    signature = re.search(r"`ConnectionPool\((.*?)\)`", text, re.S)
    assert signature is not None
    shown = {part.split("=")[0].strip() for part in signature.group(1).replace("\n", " ").split(",")}
    wanted = set(inspect.signature(ConnectionPool.__init__).parameters) - {"self", "connect_kwargs"}
    assert wanted <= shown, f"README's signature omits {sorted(wanted - shown)}"


def test_parameter_reference_gives_the_signature_s_defaults() -> None:
    """docs/parameters.md's signature, and each table's default, are the
    constructor's: a default changed in the code alone is a silent change of
    behaviour for everyone who relies on the reference."""
    import inspect
    import re

    from pymysqlpool import ConnectionPool

    text = (ROOT / "docs" / "parameters.md").read_text()
    block = re.search(r"```text\nConnectionPool\((.*?)\)\n```", text, re.S)
    assert block is not None, "the reference lost its signature block"
    documented = {}
    for part in block.group(1).replace("\n", " ").split(","):
        name, _, value = part.strip().partition("=")
        if value:
            documented[name] = value
    parameters = inspect.signature(ConnectionPool.__init__).parameters
    actual = {name: repr(p.default) for name, p in parameters.items() if p.default is not inspect.Parameter.empty}
    assert documented == actual
    # Each table row's default, where the row gives a literal (not "min(10, maxsize)").
    tables = text.split("## PyMySQL arguments")[0]  # the pool's own tables, not the later ones
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+?) \|", tables, re.M))
    literal = {name: rows[name] for name in actual if name in rows and not rows[name].startswith("min(")}
    assert len(literal) >= 15, sorted(literal)
    for name, default in literal.items():
        value = parameters[name].default
        shown = None if default == "None" else (default == "True" if default in ("True", "False") else default)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            assert float(default) == value, (name, default, value)
        else:
            assert shown == value, (name, default, value)
