"""Imported in the forkserver only (see pgcc._forkserver.PRELOAD), never in the worker.

The forkserver is in the worker's process group, so `kill -TERM -- -PGID`
(systemd's stop) reaches it too; it would die of it, and the kernel would
then kill every child forked from it (they die with their parent), ending
the running jobs that the worker means to let finish. The worker alone
decides their fate, so the forkserver ignores SIGTERM (it ignores SIGINT
already); it still ends when the worker does.
"""

import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)
