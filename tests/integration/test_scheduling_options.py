"""Scheduling options through the three doors (SQL, Python, CLI): a key
de-duplicates live jobs, and bad options are refused like bad fields
(SQLSTATE 22023, ScheduleError, exit 2) with nothing written."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

import pgcc
from tests.helpers import call, grant
from tests.paths import run_cli


def jobs_count(db: psycopg.Connection[Any], schema: str) -> int:
    row = db.execute(sql.SQL("SELECT count(*) FROM {}.jobs").format(
        sql.Identifier(schema))).fetchone()
    assert row is not None
    return int(row[0])


def set_state(db: psycopg.Connection[Any], schema: str, job_id: int, state: str) -> None:
    db.execute(sql.SQL("UPDATE {}.jobs SET state = %s, finished_at = now(),"
                       " worker_id = 1 WHERE id = %s").format(sql.Identifier(schema)),
               [state, job_id])


def sql_schedule(db: psycopg.Connection[Any], schema: str, **args: Any) -> int:
    named = sql.SQL(", ").join(sql.SQL("{} => %s").format(sql.Identifier(name))
                               for name in args)
    row = db.execute(sql.SQL("SELECT {}.schedule_task({})").format(
        sql.Identifier(schema), named), list(args.values())).fetchone()
    assert row is not None
    return int(row[0])


def test_a_live_key_returns_the_existing_job_through_every_door(
        db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        pg_dsn: str) -> None:
    first = client.schedule_task("t", {"n": 1}, key="report:7")
    # Whatever the task, queue or parameters: the key is the environment's.
    assert client.schedule_task("other", {"n": 2}, key="report:7", queue="q") == first
    assert sql_schedule(db, schema_name, task="u", key="report:7") == first
    cli = run_cli("schedule", "t", "{}", "--key", "report:7", "--dsn", pg_dsn,
                  "--schema", schema_name)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == str(first)
    assert client.schedule_tasks([{"task": "t", "key": "report:7"}]) == [first]
    assert jobs_count(db, schema_name) == 1
    job = client.get_job(first)
    assert job is not None and job.key == "report:7" and job.parameters == {"n": 1}


def test_the_key_is_free_again_once_its_job_is_finished(
        db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client) -> None:
    first = client.schedule_task("t", key="k")
    set_state(db, schema_name, first, "running")
    assert client.schedule_task("t", key="k") == first
    for state in ("done", "failed", "dead", "cancelled"):
        set_state(db, schema_name, first, state)
        again = client.schedule_task("t", key="k")
        assert again != first
        set_state(db, schema_name, again, state)
        first = again


def test_a_bulk_request_gives_one_job_per_key(
        db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client) -> None:
    held = client.schedule_task("t", key="a")
    ids = client.schedule_tasks([
        {"task": "t", "key": "a"}, {"task": "t", "key": "b"}, {"task": "t"},
        {"task": "u", "key": "b", "priority": 3}, {"task": "t", "max_attempts": 2},
    ])
    assert ids[0] == held and ids[1] == ids[3]
    assert len(set(ids)) == 4
    assert jobs_count(db, schema_name) == 4
    row = db.execute(sql.SQL("SELECT schedule_tasks FROM {}.schedule_tasks(%s::jsonb)").format(
        sql.Identifier(schema_name)), ['[{"task": "t", "key": "c"}, {"task": "t", "key": "c"}]']
    ).fetchone()
    assert row is not None and row[0][0] == row[0][1]
    last = client.get_job(ids[4])
    assert last is not None and last.max_attempts == 2


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_a_key_scheduled_in_an_open_transaction_holds_the_other_caller(
        pg_dsn: str, schema_name: str, client: pgcc.Client, db: psycopg.Connection[Any],
        outcome: str) -> None:
    """The second caller waits for the first's transaction, then gets its id
    (commit) or inserts its own job (rollback): one live row either way."""
    results: list[int] = []
    with psycopg.connect(pg_dsn) as conn:
        first = client.schedule_task("t", key="shared", connection=conn)

        def second() -> None:
            with pgcc.Client(pg_dsn, schema=schema_name) as other:
                results.append(other.schedule_task("t", key="shared"))

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "the second caller should wait for the first's commit"
        if outcome == "commit":
            conn.commit()
        else:
            conn.rollback()
        thread.join(10)
    assert len(results) == 1
    if outcome == "commit":
        assert results == [first]
    else:
        assert results[0] != first
    assert jobs_count(db, schema_name) == 1


def test_retrying_a_job_whose_key_is_held_says_so(
        db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        pg_dsn: str) -> None:
    first = client.schedule_task("t", key="k")
    set_state(db, schema_name, first, "failed")
    second = client.schedule_task("t", key="k")
    assert client.retry_job(first) is False
    assert client.retry_jobs("failed") == []
    cli = run_cli("retry", str(first), "--dsn", pg_dsn, "--schema", schema_name)
    assert cli.returncode == 1
    assert "key 'k' is held by another queued or running job" in cli.stderr
    set_state(db, schema_name, second, "done")
    assert client.retry_job(first) is True


BAD_OPTIONS = [
    ({"key": ""}, "key must be a non-empty name"),
    ({"key": "x" * 201}, "key is 201 characters long"),
    ({"priority": 101}, "priority must be from -100 to 100"),
    ({"priority": -101}, "priority must be from -100 to 100"),
    ({"max_attempts": 0}, "max_attempts must be from 1 to 1000"),
    ({"max_attempts": 1001}, "max_attempts must be from 1 to 1000"),
    ({"timeout": 0}, "timeout must be more than 0"),
    ({"timeout": -1.5}, "timeout must be more than 0"),
    ({"timeout": 31622400}, "timeout must be more than 0"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_bad_options_are_refused_by_every_door_and_nothing_is_written(
        db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client, pg_dsn: str,
        options: dict[str, Any], message: str) -> None:
    with pytest.raises(pgcc.ScheduleError, match=message):
        client.schedule_task("t", **options)
    with pytest.raises(pgcc.ScheduleError, match=f"jobs\\[1\\]: {message}"):
        client.schedule_tasks([{"task": "t"}, {"task": "t", **options}])
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        sql_schedule(db, schema_name, task="t", **options)
    with pytest.raises(psycopg.errors.InvalidParameterValue,
                       match=f"jobs\\[1\\].{message}"):
        db.execute(sql.SQL("SELECT {}.schedule_tasks(%s)").format(sql.Identifier(schema_name)),
                   [Jsonb([{"task": "t"}, {"task": "t", **options}])])
    (name, value), = options.items()
    cli = run_cli("schedule", "t", "{}", f"--{name.replace('_', '-')}", str(value),
                  "--dsn", pg_dsn, "--schema", schema_name)
    assert cli.returncode == 2
    assert message in cli.stderr and len(cli.stderr.strip().splitlines()) == 1
    assert jobs_count(db, schema_name) == 0


@pytest.mark.parametrize("options", [{"priority": 1.5}, {"priority": "1"},
                                     {"max_attempts": True}, {"timeout": "1"}])
def test_options_of_the_wrong_type_are_refused(client: pgcc.Client,
                                               options: dict[str, Any]) -> None:
    with pytest.raises(pgcc.ScheduleError):
        client.schedule_task("t", **options)
    with pytest.raises(pgcc.ScheduleError):
        client.schedule_tasks([{"task": "t", **options}])


# ---- paused queues -------------------------------------------------------------------------


def test_pause_and_resume_through_every_door(
        db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        pg_dsn: str) -> None:
    """Any valid name may be paused, one with no jobs too; pausing twice or
    resuming a queue that is not paused changes nothing and says so."""
    assert client.pause_queue("later") is True
    assert client.pause_queue("later") is False
    assert client.paused_queues() == ["later"]
    row = db.execute(sql.SQL("SELECT {0}.pause_queue('sql'), {0}.resume_queue('nope')").format(
        sql.Identifier(schema_name))).fetchone()
    assert row == (True, False)
    cli = run_cli("pause", "cli", "--dsn", pg_dsn, "--schema", schema_name)
    assert (cli.returncode, cli.stdout.strip()) == (0, "queue cli paused")
    cli = run_cli("resume", "nope", "--dsn", pg_dsn, "--schema", schema_name)
    assert (cli.returncode, cli.stdout.strip()) == (0, "queue nope was not paused")

    async def aio() -> list[str]:
        async with pgcc.AsyncClient(pg_dsn, schema=schema_name) as aclient:
            assert await aclient.resume_queue("sql") is True
            return await aclient.paused_queues()
    assert asyncio.run(aio()) == ["cli", "later"]
    client.schedule_task("t", queue="later")
    status = run_cli("status", "--json", "--dsn", pg_dsn, "--schema", schema_name)
    paused = json.loads(status.stdout)["paused_queues"]
    assert [(p["queue"], p["queued"]) for p in paused] == [("cli", 0), ("later", 1)]


def test_a_bad_queue_name_is_refused_by_pause_and_resume(
        db: psycopg.Connection[Any], schema_name: str, client: pgcc.Client,
        pg_dsn: str) -> None:
    with pytest.raises(pgcc.ScheduleError, match="queue must be a non-empty name"):
        client.pause_queue(" ")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="queue is 201 characters"):
        db.execute(sql.SQL("SELECT {}.pause_queue(%s)").format(sql.Identifier(schema_name)),
                   ["q" * 201])
    cli = run_cli("resume", "", "--dsn", pg_dsn, "--schema", schema_name)
    assert cli.returncode == 2 and "queue must be a non-empty name" in cli.stderr
    assert client.paused_queues() == []


def test_pausing_is_an_operators_door(pg_dsn: str, schema_name: str,
                                      login_role: Any) -> None:
    enqueuer, enqueue_dsn = login_role()
    grant(pg_dsn, schema_name, "enqueue", enqueuer)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        call(enqueue_dsn, schema_name, "SELECT {}.pause_queue('q')")
    assert call(enqueue_dsn, schema_name, "SELECT {}.schedule_task('t', key => 'k')") == \
        call(enqueue_dsn, schema_name, "SELECT {}.schedule_task('u', key => 'k')")
    operator, operator_dsn = login_role()
    grant(pg_dsn, schema_name, "worker", operator)
    assert call(operator_dsn, schema_name, "SELECT {}.pause_queue('q')") is True
    with pgcc.Client(operator_dsn, schema=schema_name) as client:
        assert client.paused_queues() == ["q"]
        assert client.resume_queue("q") is True


def test_the_dashboard_lists_paused_queues(pg_dsn: str, schema_name: str,
                                           client: pgcc.Client) -> None:
    from psycopg_pool import ConnectionPool

    from tests.integration.test_dashboard import browser

    client.schedule_task("t", queue="<held>")
    client.pause_queue("<held>")
    with ConnectionPool(pg_dsn, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
        page = browser(pool, schema_name).get("/").text
    assert "Paused queues" in page and "&lt;held&gt;" in page and "<held>" not in page


def test_the_doors_tell_the_workers_of_a_job_of_another_priority(
        pg_dsn: str, schema_name: str, client: pgcc.Client) -> None:
    """schedule_task and schedule_tasks send NOTIFY 'priority' when they write a
    job of another priority than 0, and only then: a worker claiming in plain
    order orders by priority again (docs/scheduling.md)."""
    with psycopg.connect(pg_dsn, autocommit=True) as listener:
        listener.execute(f'LISTEN "pgcc.{schema_name}"')

        def payloads() -> set[str]:
            return {n.payload for n in listener.notifies(timeout=0.5)}

        client.schedule_task("t", {})
        client.schedule_tasks([{"task": "t"}, {"task": "t", "priority": 0, "key": "k0"}])
        assert payloads() == {""}
        client.schedule_task("t", {}, priority=-5)
        assert "priority" in payloads()
        client.schedule_tasks([{"task": "t"}, {"task": "t", "priority": 9}])
        assert "priority" in payloads()
        client.schedule_task("t", {}, key="held", priority=3)
        assert "priority" in payloads()
        # The key is held: nothing is written, and nothing told.
        client.schedule_task("t", {}, key="held", priority=3)
        client.schedule_tasks([{"task": "t", "key": "held", "priority": 3}])
        assert "priority" not in payloads()
