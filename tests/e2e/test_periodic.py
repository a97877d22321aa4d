"""Periodic tasks with real workers: however many run, each tick is one job;
after downtime only the most recent missed tick runs; a bad schedule is a
broken module, named in the log; `pgcc periodic` lists what is scheduled.

A schedule ticks once a minute at most, so one test waits for one real minute
boundary (30 s on average); the downtime before it is made by writing the
table as ten minutes without a worker would have left it."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import psycopg

from tests.helpers import q
from tests.paths import PERIODIC_TASKS, run_cli
from tests.workers import FAST, WorkerFactory, copy_tasks, print_worker_logs, wait_for, write_task

MINUTE = dt.timedelta(minutes=1)


def periodic_row(db: psycopg.Connection[Any], schema: str) -> tuple[Any, ...]:
    row = db.execute(q(schema, "SELECT last_tick, last_job_id, active FROM {}.periodic "
                               "WHERE task = 'every_minute'")).fetchone()
    assert row is not None
    return tuple(row)


def periodic_jobs(db: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    return db.execute(q(schema, "SELECT id, created_at, state, result FROM {}.jobs "
                                "WHERE task = 'every_minute' ORDER BY id")).fetchall()


def cli(dsn: str, schema: str, *args: str) -> str:
    result = run_cli("periodic", "--dsn", dsn, "--schema", schema, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_three_workers_schedule_each_tick_once_and_only_the_latest_missed_one(
        tmp_path: Path, pg_dsn: str, schema_name: str, db: psycopg.Connection[Any],
        start_worker: WorkerFactory) -> None:
    tasks = copy_tasks(tmp_path / "tasks", PERIODIC_TASKS, "every_minute")
    write_task(tasks, "bad_schedule", 'schedule = "every minute"\n\n\n'
                                      "def run(params):\n    pass\n")
    # Workers ran this schedule until ten minutes ago; none has run since.
    db.execute(q(schema_name, """
        INSERT INTO {}.periodic (task, schedule, timezone, parameters, due_after, last_tick)
        VALUES ('every_minute', '* * * * *', 'UTC', %s,
                date_trunc('minute', now()) - interval '10 minutes',
                date_trunc('minute', now()) - interval '10 minutes')"""), ['{"from": "cron"}'])
    inserted = db.execute("SELECT date_trunc('minute', now())").fetchone()[0]  # type: ignore[index]
    workers = [start_worker(tasks, *FAST, "--concurrency", "1") for _ in range(3)]
    try:
        # One job for the ten missed ticks: the most recent when the workers
        # start, this minute's or (if they start after its end) the next one's.
        latest_missed, catch_up_job, _ = wait_for(
            lambda: (row := periodic_row(db, schema_name))[0] > inserted - 10 * MINUTE and row,
            timeout=30, what="the catch-up tick")
        assert latest_missed in (inserted, inserted + MINUTE)
        next_tick = latest_missed + MINUTE
        time.sleep(1.0)  # time for the other workers to try the same tick
        catch_up = [job for job in periodic_jobs(db, schema_name) if job[1] < next_tick]
        assert [job[0] for job in catch_up] == [catch_up_job]
        # Made in the minute of the tick it is for: the latest one missed.
        assert latest_missed <= catch_up[0][1] < next_tick
        # The next tick, at a real minute boundary that all three workers wait for.
        wait_for(lambda: len(periodic_jobs(db, schema_name)) >= 2, timeout=75,
                 what="the next tick")
        wait_for(lambda: all(job[2] == "done" for job in periodic_jobs(db, schema_name)),
                 what="the periodic jobs to finish")
        time.sleep(1.0)
        jobs = periodic_jobs(db, schema_name)
        assert len(jobs) == 2
        assert periodic_row(db, schema_name)[:2] == (next_tick, jobs[1][0])
        assert dt.timedelta(0) <= jobs[1][1] - next_tick < dt.timedelta(seconds=3)
        assert [job[3] for job in jobs] == [{"from": "cron"}] * 2
        logs = [worker.log() for worker in workers]
        assert sum(log.count("scheduled as job") for log in logs) == 2
        for log in logs:
            assert "bad_schedule.py: schedule 'every minute' must have five fields" in log
        # What `pgcc periodic` shows: the next run, and the last tick with its job.
        lines = cli(pg_dsn, schema_name).splitlines()
        assert lines[0].split() == ["TASK", "SCHEDULE", "ZONE", "NEXT", "RUN", "LAST", "TICK"]
        assert lines[1].split() == [
            "every_minute", "*", "*", "*", "*", "*", "UTC",
            (next_tick + MINUTE).isoformat(), next_tick.isoformat(), "job", f"#{jobs[1][0]}",
            "done"]
        assert len(lines) == 2  # the broken module has no schedule
        [entry] = json.loads(cli(pg_dsn, schema_name, "--json"))
        assert entry == {
            "task": "every_minute", "schedule": "* * * * *", "timezone": "UTC",
            "parameters": {"from": "cron"}, "active": True,
            "next_run": (next_tick + MINUTE).isoformat(), "overdue": False,
            "last_tick": next_tick.isoformat(), "last_job": {"id": jobs[1][0], "state": "done"},
            "declared_at": entry["declared_at"]}
    except BaseException:
        print_worker_logs(start_worker, db, schema_name)
        raise


def test_a_worker_without_the_schedule_retires_it(
        tmp_path: Path, pg_dsn: str, schema_name: str, db: psycopg.Connection[Any],
        start_worker: WorkerFactory) -> None:
    assert cli(pg_dsn, schema_name).strip() == \
        'no periodic tasks (a task module declares one with schedule = "...")'
    # An older version of the task had a schedule, and was last run an hour ago.
    db.execute(q(schema_name, """
        INSERT INTO {}.periodic (task, schedule, timezone, due_after)
        VALUES ('every_minute', '*/5 * * * *', 'Europe/Berlin', now() - interval '1 hour')"""))
    overdue = json.loads(cli(pg_dsn, schema_name, "--json"))[0]
    assert overdue["overdue"] and overdue["next_run"] is not None
    assert "OVERDUE" in cli(pg_dsn, schema_name)
    tasks = write_task(tmp_path / "tasks", "every_minute", "def run(params):\n    pass\n").parent
    start_worker(tasks, *FAST)
    wait_for(lambda: not periodic_row(db, schema_name)[2], what="the schedule retired")
    assert "inactive (its module has no schedule any more)" in cli(pg_dsn, schema_name)
    assert periodic_jobs(db, schema_name) == []


def test_pgcc_periodic_on_an_unmigrated_schema_exits_3(pg_dsn: str) -> None:
    result = run_cli("periodic", "--dsn", pg_dsn, "--schema", "no_such_schema_here")
    assert result.returncode == 3
    assert len(result.stderr.strip().splitlines()) == 1


def test_two_workers_with_different_schedules_the_last_started_wins(
        tmp_path: Path, pg_dsn: str, schema_name: str, db: psycopg.Connection[Any],
        start_worker: WorkerFactory) -> None:
    old = copy_tasks(tmp_path / "old", PERIODIC_TASKS, "every_minute")
    new = write_task(tmp_path / "new", "every_minute",
                     'schedule = "0 4 * * *"\nschedule_timezone = "Asia/Tokyo"\n\n\n'
                     "def run(params):\n    pass\n").parent
    first = start_worker(old, *FAST)
    wait_for(lambda: "periodic: every_minute runs at '* * * * *' (UTC)" in first.log(),
             what="the first worker's declaration")
    second = start_worker(new, *FAST)
    wait_for(lambda: "runs at '0 4 * * *' (Asia/Tokyo)" in second.log(),
             what="the second worker's declaration")
    row = db.execute(q(schema_name, "SELECT schedule, timezone FROM {}.periodic")).fetchone()
    assert row == ("0 4 * * *", "Asia/Tokyo")
    # The first worker follows the schedule in the database, and says so once.
    wait_for(lambda: "another worker declared '0 4 * * *' (Asia/Tokyo) after this one's "
                     "'* * * * *' (UTC); the last declared applies to every worker"
                     in first.log(), timeout=15, what="the first worker's warning")
    [entry] = json.loads(cli(pg_dsn, schema_name, "--json"))
    assert dt.datetime.fromisoformat(entry["next_run"]).astimezone(
        dt.timezone(dt.timedelta(hours=9))).strftime("%H:%M") == "04:00"
