"""Seeing periodic tasks: `pgcc periodic`, and their sections of `pgcc status`
and the dashboard. (The worker's side is pgcc/_worker/periodic.py.)

Each schedule (`--json` keys): task, schedule, timezone, parameters, active,
next_run (ISO 8601, UTC; null when inactive), overdue (the next run is a
tick already past that no worker has scheduled yet: none runs this task
now), last_tick, last_job ({id, state}; state null once the job is pruned),
declared_at (when a worker last declared or retired it).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import class_row

from pgcc._cron import Cron
from pgcc._queries import for_schema
from pgcc.errors import ScheduleError


class ScheduleRow(NamedTuple):
    task: str
    schedule: str
    timezone: str
    parameters: str
    active: bool
    due_after: dt.datetime
    last_tick: dt.datetime | None
    last_job_id: int | None
    last_job_state: str | None
    declared_at: dt.datetime
    now: dt.datetime


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.timezone.utc).isoformat()


def next_run(row: ScheduleRow) -> tuple[dt.datetime | None, bool]:
    """When the schedule runs next, and whether that tick is already past (due
    but not scheduled: no worker with the task runs)."""
    if not row.active:
        return None, False
    try:
        cron = Cron.parse(row.schedule, row.timezone)
    except ScheduleError:  # declared by a worker of another version
        return None, False
    # A worker schedules the most recent due tick, not the first one missed.
    latest = cron.latest_at_or_before(row.now)
    if latest is not None and latest > row.due_after:
        return latest, True
    return cron.next_after(row.now), False


def collect(conn: psycopg.Connection[Any], schema: str) -> list[dict[str, Any]]:
    """Every schedule, by task name."""
    rows = conn.cursor(row_factory=class_row(ScheduleRow)).execute(
        for_schema(schema)["periodic_list"]).fetchall()
    entries = []
    for row in rows:
        upcoming, overdue = next_run(row)
        entries.append({
            "task": row.task, "schedule": row.schedule, "timezone": row.timezone,
            "parameters": json.loads(row.parameters), "active": row.active,
            "next_run": _iso(upcoming), "overdue": overdue, "last_tick": _iso(row.last_tick),
            "last_job": None if row.last_job_id is None
            else {"id": row.last_job_id, "state": row.last_job_state},
            "declared_at": _iso(row.declared_at),
        })
    return entries


def describe_next(entry: dict[str, Any]) -> str:
    if not entry["active"]:
        return "inactive (its module has no schedule any more)"
    if entry["next_run"] is None:
        return "never"
    return str(entry["next_run"]) + (" OVERDUE (no worker with this task runs?)"
                                if entry["overdue"] else "")


def describe_last(entry: dict[str, Any]) -> str:
    if entry["last_tick"] is None:
        return "-"
    job = entry["last_job"]
    if job is None:
        return str(entry["last_tick"])
    return f"{entry['last_tick']} job #{job['id']} {job['state'] or 'pruned'}"


def render(entries: list[dict[str, Any]]) -> str:
    """`pgcc periodic`: one line per schedule."""
    if not entries:
        return "no periodic tasks (a task module declares one with schedule = \"...\")"
    table = [("TASK", "SCHEDULE", "ZONE", "NEXT RUN", "LAST TICK")] + [
        (e["task"], e["schedule"], e["timezone"], describe_next(e), describe_last(e))
        for e in entries]
    widths = [max(len(row[column]) for row in table) for column in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
        + "  " + row[4]
        for row in table)
