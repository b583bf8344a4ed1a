"""Command line: ``python -m pymysqlpool`` (placeholder until the CLI lands)."""

from __future__ import annotations

import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    print("pymysqlpool: command line not implemented yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
