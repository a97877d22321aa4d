"""What `pgcc status` reports: jobs by state, task and queue; what runs (and
for how long), what is scheduled for later, what failed in the last hour;
live workers and their tasks; and tasks whose queued jobs no live worker serves.

The report (`--json`) has stable keys: schema, jobs, tasks, queues,
oldest_waiting_seconds, workers, running, scheduled, scheduled_total,
failed_last_hour, failed_last_hour_by_task, unserved_tasks, periodic (the
schedules of periodic tasks, as `pgcc periodic --json` lists them), paused_queues,
maintenance_leader (who rescues and prunes, or null)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import class_row

from pgcc import _periodic as periodic
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


class LeaderRow(NamedTuple):
    leader_id: str
    leading_for: float
    expires_in: float


class RunningRow(NamedTuple):
    id: int
    task: str
    queue: str | None
    worker_id: int | None
    attempts: int
    running_for: float | None


class ScheduledRow(NamedTuple):
    id: int
    task: str
    queue: str | None
    run_at: dt.datetime
    due_in: float


class FailedRow(NamedTuple):
    id: int
    task: str
    queue: str | None
    state: str
    ago: float
    error: str


class WorkerTasks(NamedTuple):
    id: int
    tasks: list[str]
    live: bool


# How many running, scheduled and failed jobs the report lists (counts are whole).
LIST_LIMIT = 10


def collect(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
    queries = for_schema(schema)
    report = _counts(conn, schema)
    limit = {"limit": LIST_LIMIT}
    report["running"] = [
        {"id": r.id, "task": r.task, "queue": r.queue, "worker": r.worker_id,
         "attempt": r.attempts,
         "running_seconds": None if r.running_for is None else round(r.running_for, 3)}
        for r in conn.cursor(row_factory=class_row(RunningRow)).execute(
            queries["status_running"], limit)]
    report["scheduled"] = [
        {"id": r.id, "task": r.task, "queue": r.queue, "run_at": r.run_at.isoformat(),
         "due_in_seconds": round(r.due_in, 3)}
        for r in conn.cursor(row_factory=class_row(ScheduledRow)).execute(
            queries["status_scheduled"], limit)]
    total = conn.execute(queries["status_scheduled_count"]).fetchone()
    report["scheduled_total"] = int(total[0]) if total else 0
    report["failed_last_hour"] = [
        {"id": r.id, "task": r.task, "queue": r.queue, "state": r.state,
         "seconds_ago": round(r.ago, 3), "error": r.error}
        for r in conn.cursor(row_factory=class_row(FailedRow)).execute(
            queries["status_failed_recent"], limit)]
    report["failed_last_hour_by_task"] = {
        str(task): int(jobs) for task, jobs in conn.execute(
            queries["status_failed_recent_by_task"]).fetchall()}
    served: set[str] = set()
    tasks_of = {}
    for w in conn.cursor(row_factory=class_row(WorkerTasks)).execute(
            queries["status_worker_tasks"]):
        tasks_of[w.id] = sorted(w.tasks)
        if w.live:
            served.update(w.tasks)
    for worker in report["workers"]:
        worker["task_names"] = tasks_of.get(worker["id"], [])
        worker["live"] = worker["heartbeat_age"] <= worker["lease"]
    report["unserved_tasks"] = sorted(
        task for task, counts in report["tasks"].items()
        if counts[JobState.QUEUED.value] and task not in served)
    report["periodic"] = periodic.collect(conn, schema)
    report["paused_queues"] = _paused_queues(conn, schema)
    leader = conn.cursor(row_factory=class_row(LeaderRow)).execute(
        queries["status_leader"]).fetchone()
    report["maintenance_leader"] = None if leader is None else {
        "name": leader.leader_id, "leading_seconds": round(leader.leading_for, 3),
        "expires_in_seconds": round(leader.expires_in, 3)}
    return report


def _counts(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
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
    waiting = ("nothing due now" if oldest is None
               else f"oldest due job has waited {_age(oldest)}")
    scheduled = report.get("scheduled", [])
    if scheduled:
        waiting += (f"; {report['scheduled_total']} scheduled for later, next in "
                    f"{_age(scheduled[0]['due_in_seconds'])}")
    lines.append("waiting  " + waiting)
    unserved = report.get("unserved_tasks", [])
    for task in unserved:
        queued = report["tasks"][task]["queued"]
        lines.append(f"WARNING  task {task}: {queued} queued, but no live worker has this "
                     "task (a typo? a worker without it in --tasks?)")
    for title in ("tasks", "queues"):
        rows = report[title]
        if rows:
            width = max(len(name) for name in rows)
            lines.extend(["", f"{title} (queued / running)"])
            lines.extend(
                f"  {name:<{width}}  {counts['queued']:>8} / {counts['running']}"
                + ("  NO LIVE WORKER" if title == "tasks" and name in unserved else "")
                for name, counts in rows.items())
    _render_paused(lines, report)
    _list(lines, "running", report.get("running", []), jobs[JobState.RUNNING.value],
          lambda r: f"for {_age(r['running_seconds'] or 0)}  on worker #{r['worker']}"
                    f"  attempt {r['attempt']}")
    _list(lines, "scheduled for later", scheduled, report.get("scheduled_total", 0),
          lambda r: f"due in {_age(r['due_in_seconds'])}  ({r['run_at']})")
    failed = report.get("failed_last_hour", [])
    _list(lines, "failed in the last hour", failed,
          sum(report.get("failed_last_hour_by_task", {}).values()),
          lambda r: f"{r['state']} {_age(r['seconds_ago'])} ago  {r['error'][:80]}")
    _periodic_section(lines, report.get("periodic", []))
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
            names = w.get("task_names", [])
            if names:
                lines.append("    tasks: " + ", ".join(names))
    if "maintenance_leader" in report:
        lines.append(_leader_line(report["maintenance_leader"]))
    return "\n".join(lines)


def _leader_line(leader: dict[str, Any] | None) -> str:
    if leader is None:
        return ("maintenance  NO LEADER: nothing gives back dead workers' jobs or prunes "
                "(every worker started with --no-reaper, and no pgcc reaper?)")
    return (f"maintenance  led by {leader['name']} for {_age(leader['leading_seconds'])} "
            f"(its lease ends in {_age(max(0.0, leader['expires_in_seconds']))} unless renewed)")


def _list(lines: list[str], title: str, rows: list[dict[str, Any]], total: int,
          describe: Callable[[dict[str, Any]], str]) -> None:
    if not rows:
        return
    more = f", showing {len(rows)}" if total > len(rows) else ""
    lines.extend(["", f"{title} ({total}{more})"])
    for r in rows:
        queue = f" [{r['queue']}]" if r["queue"] else ""
        lines.append(f"  #{r['id']} {r['task']}{queue}  {describe(r)}")


def _periodic_section(lines: list[str], entries: list[dict[str, Any]]) -> None:
    """Periodic tasks, one line each (all of them: `pgcc periodic` for a table)."""
    if not entries:
        return
    lines.extend(["", f"periodic ({len(entries)})"])
    for entry in entries:
        lines.append(f"  {entry['task']}  {entry['schedule']} ({entry['timezone']})  "
                     f"next {periodic.describe_next(entry)}  last "
                     f"{periodic.describe_last(entry)}")


# ---- paused queues (issue 16) -------------------------------------------------------


def _paused_queues(conn: psycopg.Connection[Any], schema: str) -> list[dict[str, Any]]:
    """Each paused queue with when it was paused and how many jobs it holds back."""
    queued = {}
    for row in conn.execute(for_schema(schema)["status_by_queue"]).fetchall():
        queued[row[0]] = int(row[1])
    return [{"queue": queue, "paused_at": paused_at.isoformat(), "queued": queued.get(queue, 0)}
            for queue, paused_at in conn.execute(
                for_schema(schema)["paused_queues"]).fetchall()]


def _render_paused(lines: list[str], report: dict[str, Any]) -> None:
    paused = report.get("paused_queues", [])
    if not paused:
        return
    lines.extend(["", f"paused queues ({len(paused)}; `pgcc resume QUEUE` lets one run)"])
    lines.extend(f"  {p['queue']}  {p['queued']} queued, paused since {p['paused_at']}"
                 for p in paused)
