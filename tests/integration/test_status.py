"""`pgcc status`: readable text and --json, on an empty schema and a busy one."""

from __future__ import annotations

import re
import subprocess
import time
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgcc._database import Link
from pgcc._maintenance.leadership import Leadership
from tests.helpers import status_json
from tests.paths import PGCC

STATES = ("queued", "running", "done", "failed", "dead", "cancelled")


def status(dsn: str, schema: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([PGCC, "status", *args, "--dsn", dsn, "--schema", schema],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result


def test_status_of_an_empty_schema(pg_dsn: str, schema_name: str) -> None:
    text = status(pg_dsn, schema_name).stdout
    assert schema_name in text
    for state in STATES:
        assert f"{state} 0" in text
    assert "none alive" in text

    report = status_json(pg_dsn, schema_name)
    assert {"jobs", "tasks", "queues", "oldest_waiting_seconds", "workers"} <= set(report)
    assert report["jobs"] == dict.fromkeys(STATES, 0)
    assert report["tasks"] == {}
    assert report["queues"] == {}
    assert report["oldest_waiting_seconds"] is None
    assert report["workers"] == []


@pytest.fixture
def busy(db: psycopg.Connection[Any], schema_name: str) -> dict[str, int]:
    """Jobs in every state, over three tasks and two queues, and one live worker.

    othertask: queued 3 (one in billing, one in reports, one waiting 10 minutes),
               running 1 (in billing)
    mytask:    queued 1 (due in an hour), running 1, done 2, failed 1
    oldtask:   dead 1, cancelled 1
    """
    s = sql.Identifier(schema_name)

    def schedule(task: str, queue: str | None = None, after: int | None = None) -> int:
        row = db.execute(sql.SQL("SELECT {}.schedule_task(%s, queue => %s, after => %s)")
                         .format(s), [task, queue, after]).fetchone()
        assert row is not None
        return int(row[0])

    def set_state(job_id: int, state: str, worker: int | None = None) -> None:
        db.execute(sql.SQL("UPDATE {}.jobs SET state = %s, worker_id = %s, attempts = 1, "
                           "finished_at = CASE WHEN %s <> 'running' THEN now() END "
                           "WHERE id = %s").format(s), [state, worker, state, job_id])

    row = db.execute(sql.SQL("INSERT INTO {}.workers (hostname, pid, tasks, concurrency, lease) "
                             "VALUES ('busyhost', 4242, '{{othertask,mytask}}', 4, "
                             "interval '30 seconds') RETURNING id").format(s)).fetchone()
    assert row is not None
    worker = int(row[0])

    waiting = schedule("othertask")
    db.execute(sql.SQL("UPDATE {}.jobs SET run_at = now() - interval '10 minutes', "
                       "scheduled_at = now() - interval '10 minutes' WHERE id = %s").format(s),
               [waiting])
    schedule("othertask", queue="billing")
    schedule("othertask", queue="reports")
    set_state(schedule("othertask", queue="billing"), "running", worker)

    schedule("mytask", after=3_600_000)
    set_state(schedule("mytask"), "running", worker)
    for _ in range(2):
        set_state(schedule("mytask"), "done")
    set_state(schedule("mytask"), "failed")

    set_state(schedule("oldtask"), "dead")
    cancelled = schedule("oldtask")
    db.execute(sql.SQL("SELECT {}.cancel_job(%s)").format(s), [cancelled])
    return {"worker": worker}


def test_status_json_of_a_busy_schema(pg_dsn: str, schema_name: str, busy: dict[str, int]) -> None:
    report = status_json(pg_dsn, schema_name)
    assert report["jobs"] == {"queued": 4, "running": 2, "done": 2, "failed": 1, "dead": 1,
                              "cancelled": 1}
    assert report["tasks"]["othertask"] == {"queued": 3, "running": 1}
    assert report["tasks"]["mytask"] == {"queued": 1, "running": 1}
    assert report["tasks"].get("oldtask", {"queued": 0, "running": 0}) == {"queued": 0,
                                                                           "running": 0}
    assert report["queues"] == {"billing": {"queued": 1, "running": 1},
                                "reports": {"queued": 1, "running": 0}}
    # The oldest due job has waited ten minutes (the one due in an hour is not waiting).
    assert 600 <= report["oldest_waiting_seconds"] < 660
    [worker] = report["workers"]
    assert worker["id"] == busy["worker"]
    assert worker["hostname"] == "busyhost" and worker["pid"] == 4242
    assert worker["concurrency"] == 4 and worker["running"] == 2
    assert worker["lease"] == 30
    assert 0 <= worker["heartbeat_age"] < 30


def test_status_text_of_a_busy_schema(pg_dsn: str, schema_name: str, busy: dict[str, int]) -> None:
    text = status(pg_dsn, schema_name).stdout
    for fragment in ("queued 4", "running 2", "done 2", "failed 1", "dead 1", "cancelled 1"):
        assert fragment in text
    assert re.search(r"\b10\.\d min\b", text)  # the oldest due job's wait
    lines = text.splitlines()

    def line_with(word: str) -> str:
        [line] = [ln for ln in lines if ln.split()[:1] == [word]]
        return line

    # (A task without a live worker is flagged after its counts.)
    assert line_with("othertask").split()[1:4] == ["3", "/", "1"]
    assert line_with("mytask").split()[1:4] == ["1", "/", "1"]
    assert line_with("billing").split()[1:] == ["1", "/", "1"]
    assert line_with("reports").split()[1:] == ["1", "/", "0"]
    assert any("busyhost" in ln and "2/4" in ln for ln in lines)  # 2 of 4 slots running
    assert "none alive" not in text


def test_status_of_a_schema_that_does_not_exist(pg_dsn: str) -> None:
    result = subprocess.run([PGCC, "status", "--dsn", pg_dsn, "--schema", "t_never_created"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 3  # the database cannot be used: not migrated
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert "t_never_created" in result.stderr


# ---- periodic tasks -----------------------------------------------------------------


def test_status_lists_periodic_tasks(pg_dsn: str, schema_name: str,
                                     db: psycopg.Connection[Any]) -> None:
    assert status_json(pg_dsn, schema_name)["periodic"] == []
    assert "periodic" not in status(pg_dsn, schema_name).stdout
    # A nightly schedule in Berlin whose last tick's job ran; a retired one.
    job_id = db.execute(sql.SQL("SELECT {}.schedule_task('nightly')").format(
        sql.Identifier(schema_name))).fetchone()[0]  # type: ignore[index]
    db.execute(sql.SQL("""
        INSERT INTO {}.periodic (task, schedule, timezone, last_tick, last_job_id, active)
        VALUES ('nightly', '30 2 * * *', 'Europe/Berlin', '2026-03-29T01:00:00Z', %s, true),
               ('old', '* * * * *', 'UTC', NULL, NULL, false)""").format(
        sql.Identifier(schema_name)), [job_id])
    nightly, old = status_json(pg_dsn, schema_name)["periodic"]
    assert nightly["task"] == "nightly" and nightly["active"] and not nightly["overdue"]
    assert nightly["last_job"] == {"id": job_id, "state": "queued"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT(00|01):30:00\+00:00", nightly["next_run"])
    assert old["next_run"] is None and not old["active"]
    text = status(pg_dsn, schema_name).stdout
    assert "periodic (2)" in text
    assert (f"  nightly  30 2 * * * (Europe/Berlin)  next {nightly['next_run']}  last "
            f"2026-03-29T01:00:00+00:00 job #{job_id} queued") in text
    assert "  old  * * * * * (UTC)  next inactive (its module has no schedule any more)  " \
           "last -" in text


def test_status_names_the_maintenance_leader_or_its_absence(pg_dsn: str,
                                                          schema_name: str) -> None:
    """No live leader: nothing rescues dead workers' jobs, and status says so;
    a leader: status names it, until its lease expires."""
    assert status_json(pg_dsn, schema_name)["maintenance_leader"] is None
    assert "maintenance  NO LEADER" in status(pg_dsn, schema_name).stdout
    link = Link(pg_dsn)
    try:
        leadership = Leadership(schema_name, 60.0)
        assert leadership.hold(link)
        leader = status_json(pg_dsn, schema_name)["maintenance_leader"]
        assert leader["name"] == leadership.name
        assert 0 <= leader["leading_seconds"] < 5 and 50 < leader["expires_in_seconds"] <= 60
        assert f"maintenance  led by {leadership.name} for" in status(pg_dsn,
                                                                      schema_name).stdout
        short = Leadership(schema_name, 0.2)
        leadership.resign(link)
        assert short.hold(link)
        time.sleep(0.3)
        assert status_json(pg_dsn, schema_name)["maintenance_leader"] is None, \
            "an expired lease names nobody"
    finally:
        link.close()
