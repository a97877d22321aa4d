"""What `pgcc status` reports: jobs by state, task and queue, and live workers."""

from __future__ import annotations

from typing import Any

import psycopg

from pgcc.queries import for_schema

STATES = ("queued", "running", "done", "failed", "dead", "cancelled")


def collect(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
    queries = for_schema(schema)
    by_state = dict.fromkeys(STATES, 0)
    by_state.update(dict(conn.execute(queries["status_by_state"]).fetchall()))
    by_task: dict[str, dict[str, int]] = {}
    for task, state, count in conn.execute(queries["status_by_task"]).fetchall():
        by_task.setdefault(task, {"queued": 0, "running": 0})[state] = count
    by_queue = {queue: {"queued": queued, "running": running}
                for queue, queued, running in conn.execute(queries["status_by_queue"])}
    oldest = conn.execute(queries["status_oldest_waiting"]).fetchone()
    workers = [
        {"id": wid, "hostname": host, "pid": pid, "concurrency": concurrency,
         "tasks": task_count or 0, "heartbeat_age": round(age, 3), "lease": lease,
         "running": running}
        for wid, host, pid, concurrency, task_count, age, lease, running
        in conn.execute(queries["status_workers"])
    ]
    return {
        "schema": schema,
        "jobs": by_state,
        "tasks": by_task,
        "queues": by_queue,
        "oldest_waiting_seconds": None if not oldest or oldest[0] is None
        else round(oldest[0], 3),
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
