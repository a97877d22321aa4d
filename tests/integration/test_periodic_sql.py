"""Periodic tasks in the database: periodic_tick makes each tick one job however
many workers try it, and the worker's declarations (the named queries
periodic_declare and periodic_retire) decide from when ticks count."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import psycopg
import pytest
from psycopg import errors

from pgcc._queries import for_schema
from tests.helpers import q

TICK = dt.datetime(2026, 3, 29, 1, 0, tzinfo=dt.timezone.utc)
EVERY_MINUTE = "* * * * *"


def declare(conn: psycopg.Connection[Any], schema: str, schedule: str = EVERY_MINUTE,
            timezone: str = "UTC", parameters: str = '{"a":1}', retire: tuple[str, ...] = ()
            ) -> None:
    queries = for_schema(schema)
    with conn.transaction():
        conn.execute(queries["periodic_declare"], {
            "tasks": ["p"], "schedules": [schedule], "timezones": [timezone],
            "parameters": [parameters]})
        conn.execute(queries["periodic_retire"], {"tasks": list(retire)})


def tick(dsn_or_conn: psycopg.Connection[Any], schema: str, at: dt.datetime,
         schedule: str = EVERY_MINUTE, timezone: str = "UTC") -> int | None:
    row = dsn_or_conn.execute(for_schema(schema)["periodic_tick"], {
        "task": "p", "schedule": schedule, "timezone": timezone, "tick": at}).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def periodic_row(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
    cur = conn.execute(q(schema, "SELECT *, now() AS now FROM {}.periodic WHERE task = 'p'"))
    row = cur.fetchone()
    assert row is not None and cur.description is not None
    return dict(zip([c.name for c in cur.description], row, strict=True))


def declared_just_now(row: dict[str, Any]) -> bool:
    """Whether ticks count from the declaration just made (not from earlier)."""
    return bool(dt.timedelta(0) <= row["now"] - row["due_after"] < dt.timedelta(seconds=5))


def jobs(conn: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    return conn.execute(q(schema, "SELECT id, task, parameters FROM {}.jobs ORDER BY id")
                        ).fetchall()


def test_a_tick_tried_by_many_at_once_is_one_job(db: psycopg.Connection[Any], pg_dsn: str,
                                                 schema_name: str) -> None:
    declare(db, schema_name)
    db.execute(q(schema_name, "UPDATE {}.periodic SET due_after = %s"),
               [TICK - dt.timedelta(hours=1)])
    # One worker's transaction has the tick and has not committed yet; seven
    # others try the same tick meanwhile and must wait for it, then find it done.
    first = psycopg.connect(pg_dsn)
    job_id = tick(first, schema_name, TICK)
    assert job_id is not None
    answers: list[int | None] = []

    def other() -> None:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            answers.append(tick(conn, schema_name, TICK))

    threads = [threading.Thread(target=other) for _ in range(7)]
    for thread in threads:
        thread.start()
    waiting = 0
    for _ in range(100):
        # This schema's ticks only: a shared server runs other tests' workers.
        waiting = db.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                             "'Lock' AND strpos(query, %s) > 0",
                             [f"\"{schema_name}\".periodic_tick"]).fetchone()[0]  # type: ignore[index]
        if waiting == 7:
            break
        threading.Event().wait(0.05)
    assert waiting == 7
    first.commit()
    first.close()
    for thread in threads:
        thread.join(10)
    assert answers == [None] * 7
    assert jobs(db, schema_name) == [(job_id, "p", {"a": 1})]
    row = periodic_row(db, schema_name)
    assert (row["last_tick"], row["due_after"], row["last_job_id"]) == (TICK, TICK, job_id)


def test_only_a_later_tick_of_the_current_active_schedule_is_scheduled(
        db: psycopg.Connection[Any], schema_name: str) -> None:
    declare(db, schema_name)
    db.execute(q(schema_name, "UPDATE {}.periodic SET due_after = %s"),
               [TICK - dt.timedelta(hours=1)])
    assert tick(db, schema_name, TICK) is not None
    assert tick(db, schema_name, TICK) is None  # the same tick again
    assert tick(db, schema_name, TICK - dt.timedelta(minutes=1)) is None  # an older one
    # A worker that read another schedule than the row's (changed since) is refused.
    later = TICK + dt.timedelta(minutes=1)
    assert tick(db, schema_name, later, schedule="*/5 * * * *") is None
    assert tick(db, schema_name, later, timezone="Europe/Berlin") is None
    declare(db, schema_name, retire=("p",))  # a worker whose module has no schedule
    assert periodic_row(db, schema_name)["active"] is False
    assert tick(db, schema_name, later) is None
    assert len(jobs(db, schema_name)) == 1


def test_ticks_count_from_a_new_or_changed_declaration_not_from_an_unchanged_one(
        db: psycopg.Connection[Any], schema_name: str) -> None:
    declare(db, schema_name)
    row = periodic_row(db, schema_name)
    assert row["active"] and declared_just_now(row)  # nothing before it is due
    old = TICK - dt.timedelta(days=1)
    db.execute(q(schema_name, "UPDATE {}.periodic SET due_after = %s"), [old])
    # The same schedule again (a worker restarting, another starting): the missed
    # ticks stay due; the parameters are the new ones.
    declare(db, schema_name, parameters='{"a":2}')
    row = periodic_row(db, schema_name)
    assert row["due_after"] == old and row["parameters"] == {"a": 2}
    # Another schedule (or zone) counts from its declaration: last writer wins.
    declare(db, schema_name, schedule="0 3 * * *", timezone="Europe/Berlin")
    row = periodic_row(db, schema_name)
    assert (row["schedule"], row["timezone"]) == ("0 3 * * *", "Europe/Berlin")
    assert declared_just_now(row)
    # Retired, then declared again: counts from the new declaration too.
    db.execute(q(schema_name, "UPDATE {}.periodic SET due_after = %s"), [old])
    declare(db, schema_name, retire=("p",))
    declare(db, schema_name, schedule="0 3 * * *", timezone="Europe/Berlin")
    row = periodic_row(db, schema_name)
    assert row["active"] and declared_just_now(row)


def test_parameters_over_the_limit_refuse_the_tick_and_record_nothing(
        db: psycopg.Connection[Any], schema_name: str) -> None:
    declare(db, schema_name, parameters='{"text":"' + "x" * 200 + '"}')
    db.execute(q(schema_name, "UPDATE {}.settings SET value = '100' "
                              "WHERE key = 'max_parameters_bytes'"))
    db.execute(q(schema_name, "UPDATE {}.periodic SET due_after = %s"),
               [TICK - dt.timedelta(hours=1)])
    with pytest.raises(errors.InvalidParameterValue, match="the limit is 100 bytes"):
        tick(db, schema_name, TICK)
    row = periodic_row(db, schema_name)
    assert row["last_tick"] is None and row["due_after"] == TICK - dt.timedelta(hours=1)
    assert jobs(db, schema_name) == []
