"""Command line: ``python -m pymysqlpool`` and the ``pymysqlpool`` script.

Run ``pymysqlpool --help`` for the commands and their exit status.
"""

from __future__ import annotations

import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
