"""A periodic task: runs every minute, returns the parameters its schedule gives."""

from __future__ import annotations

from typing import Any

schedule = "* * * * *"
schedule_parameters = {"from": "cron"}


def run(params: dict[str, Any]) -> dict[str, Any]:
    return params
