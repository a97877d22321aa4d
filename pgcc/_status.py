"""What `pgcc status` reports: jobs by state, task and queue, and live workers."""

from __future__ import annotations

from typing import Any, NamedTuple

import psycopg
from psycopg.rows import class_row

from pgcc._queries import for_schema
from pgcc._states import JobState

STATES = tuple(state.value for state in JobState)


class StateCount(NamedTuple):
    state: str  # a JobState's value
    jobs: int


class TaskCount(NamedTuple):
    task: str
    state: str  # a JobState's value
    jobs: int


class QueueCount(NamedTuple):
    queue: str
    queued: int
    running: int


class Oldest(NamedTuple):
    waited: float | None


class WorkerRow(NamedTuple):
    id: int
    hostname: str
    pid: int
    concurrency: int
    task_count: int | None
    heartbeat_age: float
    lease: float
    running: int


def collect(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
    queries = for_schema(schema)
    by_state = dict.fromkeys(STATES, 0)
    for row in conn.cursor(row_factory=class_row(StateCount)).execute(
            queries["status_by_state"]):
        by_state[JobState(row.state).value] = row.jobs
    by_task: dict[str, dict[str, int]] = {}
    for task in conn.cursor(row_factory=class_row(TaskCount)).execute(
            queries["status_by_task"]):
        counts = by_task.setdefault(task.task, {JobState.QUEUED.value: 0,
                                                JobState.RUNNING.value: 0})
        counts[JobState(task.state).value] = task.jobs
    by_queue = {q.queue: {JobState.QUEUED.value: q.queued, JobState.RUNNING.value: q.running}
                for q in conn.cursor(row_factory=class_row(QueueCount)).execute(
                    queries["status_by_queue"])}
    oldest = conn.cursor(row_factory=class_row(Oldest)).execute(
        queries["status_oldest_waiting"]).fetchone()
    workers = [
        {"id": w.id, "hostname": w.hostname, "pid": w.pid, "concurrency": w.concurrency,
         "tasks": w.task_count or 0, "heartbeat_age": round(w.heartbeat_age, 3),
         "lease": w.lease, "running": w.running}
        for w in conn.cursor(row_factory=class_row(WorkerRow)).execute(
            queries["status_workers"])
    ]
    return {
        "schema": schema,
        "jobs": by_state,
        "tasks": by_task,
        "queues": by_queue,
        "oldest_waiting_seconds": None if oldest is None or oldest.waited is None
        else round(oldest.waited, 3),
        "workers": workers,
    }


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def render(report: dict[str, Any]) -> str:
    jobs = report["jobs"]
    lines = [f"pgcc status (schema {report['schema']})", ""]
    lines.append("jobs     " + "  ".join(f"{state} {jobs[state]}" for state in STATES))
    oldest = report["oldest_waiting_seconds"]
    lines.append("waiting  " + ("nothing due" if oldest is None
                                 else f"oldest due job has waited {_age(oldest)}"))
    for title in ("tasks", "queues"):
        rows = report[title]
        if rows:
            width = max(len(name) for name in rows)
            lines.extend(["", f"{title} (queued / running)"])
            lines.extend(f"  {name:<{width}}  {counts['queued']:>8} / {counts['running']}"
                         for name, counts in rows.items())
    lines.append("")
    if not report["workers"]:
        lines.append("workers  none alive")
    else:
        lines.append(f"workers  {len(report['workers'])}")
        for w in report["workers"]:
            stale = "  LATE" if w["heartbeat_age"] > w["lease"] else ""
            lines.append(
                f"  #{w['id']} {w['hostname']}:{w['pid']}  {w['running']}/{w['concurrency']} "
                f"running  {w['tasks']} tasks  heartbeat {_age(w['heartbeat_age'])} ago "
                f"(lease {w['lease']:g} s){stale}"
            )
    return "\n".join(lines)
