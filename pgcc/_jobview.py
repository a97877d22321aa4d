"""How `pgcc jobs` and `pgcc job` show jobs: a table, a detail page, or JSON."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from pgcc._client_base import Job, Step


def job_dict(job: Job, steps: list[Step] | None = None) -> dict[str, Any]:
    """The job as JSON-able values: times in ISO 8601, the state as text; with
    its recorded steps when given."""
    shown = {key: _plain(value) for key, value in dataclasses.asdict(job).items()}
    if steps is not None:
        shown["steps"] = [_plain(dataclasses.asdict(step)) for step in steps]
    return shown


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, str):
        return str(value)  # a JobState as its text
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False)


def _time(value: dt.datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _first_line(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[:width - 3] + "..."


def table(jobs: list[Job]) -> str:
    """One line per job: id, state, task, queue, attempts, created, finished, error."""
    header = ("ID", "STATE", "TASK", "QUEUE", "ATTEMPTS", "CREATED (UTC)", "FINISHED (UTC)",
              "ERROR")
    rows = [header] + [
        (str(j.id), str(j.state), j.task, j.queue or "-",
         f"{j.attempts}/{j.max_attempts if j.max_attempts is not None else '-'}",
         _time(j.created_at), _time(j.finished_at), _first_line(j.error))
        for j in jobs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     .rstrip() for row in rows)


def detail(job: Job, steps: list[Step] | None = None) -> str:
    """Everything about one job, for people."""
    lines = [
        f"job {job.id}: {job.task}" + (f" (queue {job.queue})" if job.queue else ""),
        f"state:        {job.state}"
        + (f" (cancel requested {_time(job.cancel_requested_at)})"
           if job.cancel_requested_at and str(job.state) == "running" else ""),
        f"attempts:     {job.attempts} of "
        f"{job.max_attempts if job.max_attempts is not None else 'the task default'}",
        f"worker:       {job.worker_id if job.worker_id is not None else '-'}",
        f"created:      {_time(job.created_at)}",
        f"scheduled:    {_time(job.scheduled_at)}",
        f"run at:       {_time(job.run_at)}",
        f"started:      {_time(job.started_at)}",
        f"finished:     {_time(job.finished_at)}",
        f"heartbeat:    {_time(job.heartbeat_at)}",
        f"parameters:   {json.dumps(job.parameters, sort_keys=True)}",
        f"result:       {json.dumps(job.result) if job.result is not None else '-'}",
    ]
    if job.error:
        lines.append("error:")
        lines.extend(f"    {line}" for line in job.error.rstrip().splitlines())
    if job.attempt_errors:
        lines.append("attempts without a response:")
        lines.extend(f"    attempt {e.get('attempt')} at {e.get('at')}: {e.get('error')}"
                     for e in job.attempt_errors)
    if steps:
        lines.append("steps:")
        width = max(len(step.name) for step in steps)
        lines.extend(f"    {step.name.ljust(width)}  attempt {step.attempt}, "
                     f"{_time(step.created_at)}: {_first_line(json.dumps(step.value))}"
                     for step in steps)
    if job.history:
        lines.append("earlier runs (before a retry):")
        for number, run in enumerate(job.history, 1):
            what = run.get("error") or (json.dumps(run.get("result"))
                                        if run.get("result") is not None else "")
            lines.append(f"    {number}. {run.get('state')} after {run.get('attempts')} "
                         f"attempt(s), worker {run.get('worker_id') or '-'}, started "
                         f"{run.get('started_at') or '-'}, finished "
                         f"{run.get('finished_at') or '-'}, retried {run.get('retried_at')}"
                         + (f": {_first_line(what)}" if what else ""))
    return "\n".join(lines)
