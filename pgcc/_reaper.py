"""`pgcc reaper`: the maintenance duties (pgcc._maintenance) in a process of their own.

It runs beside the workers or instead of their own maintenance (--no-reaper):
whichever candidate holds the leadership's lease does the work.
"""

from __future__ import annotations

import time

from pgcc._maintenance.maintainer import Maintainer, MaintenanceConfig, Report
from pgcc._maintenance.pruner import PrunerConfig

# The leadership's lease of a standalone reaper: when it dies without
# resigning, the next candidate leads after at most this long.
REAPER_LEASE = 10.0


def run(dsn: str, schema: str, *, once: bool, retention: float | None) -> Report | None:
    """One pass of every duty with `once`; else lead, or stand by to lead, until
    interrupted (KeyboardInterrupt), and resign then."""
    config = MaintenanceConfig(lease=REAPER_LEASE, pruner=PrunerConfig(retention=retention))
    maintainer = Maintainer(dsn, schema, config, application_name="pgcc reaper")
    try:
        if once:
            return maintainer.once()
        while True:
            time.sleep(maintainer.step())
    finally:
        maintainer.close()
