"""The `pgcc` command (the console script, and `python -m pgcc`).

Kept light: a worker's forkserver starts before the CLI and psycopg are
imported, so the two boot side by side.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["worker"] and not {"--help", "-h"} & set(sys.argv):
        from pgcc import _forkserver as forkserver

        forkserver.start()
    from pgcc._cli import app

    app()


if __name__ == "__main__":
    main()
