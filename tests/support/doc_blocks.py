"""The Python blocks of README.md and docs/*.md, pointed at the test server.

The documentation shows the default server (``host='127.0.0.1'`` or
``'localhost'``); the tests run each block against MYSQL_HOST/MYSQL_PORT by
rewriting those host literals into the test server's host and port.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, List, Tuple
from urllib.parse import quote

from support.server_env import mysql_kwargs

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
# host='127.0.0.1' (a keyword) or 'host': '127.0.0.1' (a dict entry).
HOST = re.compile(r"""(?P<key>host=|(?P<dq>['"])host(?P=dq):\s*)(?P<q>['"])(?:127\.0\.0\.1|localhost)(?P=q)""")
CONNECTS = re.compile(r"ConnectionPool\w*\(|connect\(")
# The docs' three-node cluster URL (issue 20's snippet): run against the test server as a one-node cluster.
CLUSTER_URL = "mysql://app:secret@h1:3311,h2:3312,h3:3313/shop"


def blocks() -> List[Tuple[Path, int, str]]:
    """(file, line, code) of every Python block."""
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in BLOCK.finditer(text):
            found.append((path, text[: match.start()].count("\n") + 1, match.group(1)))
    return found


def localize(code: str, server: Any = None) -> str:
    """``code`` with every default-server host literal replaced by the test server's host and port."""
    server = server or mysql_kwargs()

    def to_test_server(match: re.Match[str]) -> str:
        if match.group("key") == "host=":
            return f"host={server['host']!r}, port={server['port']!r}"
        quote = match.group("dq")
        return f"{quote}host{quote}: {server['host']!r}, {quote}port{quote}: {server['port']!r}"

    user = quote(str(server.get("user", "root")), safe="") + (
        ":" + quote(str(server["password"]), safe="") if server.get("password") else ""
    )
    url = f"mysql://{user}@{server['host']}:{server['port']}/{server.get('database', 'test')}"
    return HOST.sub(to_test_server, code).replace(CLUSTER_URL, url)
