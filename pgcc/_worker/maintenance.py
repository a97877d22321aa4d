"""The worker's maintenance part: a maintainer (pgcc._maintenance) under the worker's settings.

Its leadership's lease is the worker's own --lease: when the leading worker
dies, the duties wait about as long as its jobs wait to be rescued anyway.
"""

from __future__ import annotations

from pgcc._maintenance.maintainer import Maintainer, MaintenanceConfig
from pgcc._maintenance.pruner import PrunerConfig
from pgcc._worker.config import WorkerConfig


def maintainer(config: WorkerConfig) -> Maintainer:
    return Maintainer(config.dsn, config.schema, MaintenanceConfig(
        lease=config.lease, pruner=PrunerConfig(retention=config.retention)),
        application_name="pgcc worker maintenance")
