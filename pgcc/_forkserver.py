"""The forkserver a worker's children are forked from.

A fresh interpreter that imports what a child needs once, so that each new
child starts with it loaded. `pgcc worker` starts it first thing, so that it
boots while the worker itself imports the CLI and connects, not after.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing import forkserver
from multiprocessing.context import ForkServerContext

# A child re-runs the main script's imports (the `pgcc` script's are light);
# this is what it needs to run jobs: the runner, the client and psycopg (the
# runner imports the client only when a job asks for it, so that the worker
# itself does not load it); and what keeps the forkserver alive through a
# process-group SIGTERM.
PRELOAD = ["pgcc._runner", "pgcc._client", "pgcc._client_async", "pgcc._steps",
           "pgcc._steps_async", "pgcc._worker.in_forkserver"]


def context() -> ForkServerContext:
    """The multiprocessing context children are started from."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def start() -> None:
    """Start the forkserver now, if it is not running yet."""
    context()
    forkserver.ensure_running()
