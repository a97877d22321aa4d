"""Task state through pgcc.Client().taskstate and pgcc.AsyncClient().taskstate.

The concurrency choice under test (documented in pgcc/taskstate.py): `save()` is an
optimistic version check. Of two saves of one state read at the same version, the second
raises StaleTaskStateError and writes nothing; the first one's update is kept.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql

import pgcc
from pgcc._taskstate import TaskState


def rows(db: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    query = sql.SQL(
        "SELECT id, status, error, tries_remaining, data FROM {}.taskstate ORDER BY id"
    ).format(sql.Identifier(schema))
    return db.execute(query).fetchall()


def row(db: psycopg.Connection[Any], schema: str, state_id: str) -> tuple[Any, ...] | None:
    return next((r for r in rows(db, schema) if r[0] == state_id), None)


def in_threads(count: int, target: Callable[[int], Any]) -> list[Any]:
    """Run target(i) in `count` threads released at once; returns results or exceptions."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def call(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target(i)
        except BaseException as exc:  # returned to the test, which asserts on it
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


# --- sync ---------------------------------------------------------------------------------


def test_get_creates_a_pending_state(client: pgcc.Client, db: psycopg.Connection[Any],
                                     schema_name: str) -> None:
    assert rows(db, schema_name) == []
    state = client.taskstate.get("order-1")
    assert (state.id, state.status, state.error, state.tries_remaining, state.data) == \
        ("order-1", "pending", None, None, {})
    assert state.created_at == state.updated_at
    assert rows(db, schema_name) == [("order-1", "pending", None, None, {})]
    again = client.taskstate.get("order-1")
    assert again.created_at == state.created_at
    assert len(rows(db, schema_name)) == 1


def test_fields_round_trip(client: pgcc.Client, db: psycopg.Connection[Any],
                           schema_name: str) -> None:
    state = client.taskstate.get("round-trip")
    data: dict[str, Any] = {
        "n": 1, "pi": 3.5, "ok": True, "none": None, "list": [1, "two", {"three": 3}],
        "text": "héllo ✓", "nested": {"a": {"b": []}},
    }
    state.status, state.error, state.tries_remaining, state.data = "started", "boom", 3, data
    state.save()
    assert state.updated_at > state.created_at
    read = client.taskstate.get("round-trip")
    assert (read.status, read.error, read.tries_remaining, read.data) == \
        ("started", "boom", 3, data)
    assert row(db, schema_name, "round-trip") == ("round-trip", "started", "boom", 3, data)

    # The same object saves again (its version follows its own saves); every status works.
    for status in ("complete", "failed", "pending"):
        read.status = status
        read.save()
        assert client.taskstate.get("round-trip").status == status
    read.error, read.tries_remaining, read.data = None, None, ["a", "list", 1]
    read.save()
    final = client.taskstate.get("round-trip")
    assert (final.error, final.tries_remaining, final.data) == (None, None, ["a", "list", 1])


@pytest.mark.parametrize("change", [
    {"status": "completed"}, {"status": "Pending"}, {"status": ""}, {"status": None},
    {"tries_remaining": "3"}, {"tries_remaining": 2.0}, {"tries_remaining": True},
    {"tries_remaining": 2**31}, {"error": 42}, {"error": "nul\x00"},
    {"data": {"when": {1, 2}}}, {"data": {"x": float("nan")}}, {"data": [float("inf")]},
    {"data": {"bad\x00": 1}}, {"data": {1: "non-string key"}},
], ids=repr)
def test_a_bad_field_raises_and_writes_nothing(client: pgcc.Client, db: psycopg.Connection[Any],
                                               schema_name: str, change: dict[str, Any]) -> None:
    state = client.taskstate.get("s")
    before = row(db, schema_name, "s")
    for name, value in change.items():
        setattr(state, name, value)
    with pytest.raises(pgcc.TaskStateError) as info:
        state.save()
    assert "'s'" in str(info.value)
    assert row(db, schema_name, "s") == before
    # Nothing was written, so the state is not stale: a corrected save works.
    fixed = client.taskstate.get("s")
    fixed.status = "complete"
    fixed.save()
    assert client.taskstate.get("s").status == "complete"


def test_second_of_two_saves_is_stale_and_the_first_is_kept(
        client: pgcc.Client, db: psycopg.Connection[Any], schema_name: str) -> None:
    first = client.taskstate.get("s")
    second = client.taskstate.get("s")
    first.status, first.data = "started", {"by": "first"}
    first.save()
    second.status, second.data = "failed", {"by": "second"}
    with pytest.raises(pgcc.StaleTaskStateError, match="get it again"):
        second.save()
    assert row(db, schema_name, "s") == ("s", "started", None, None, {"by": "first"})
    # The documented way on: read it again, then decide.
    fresh = client.taskstate.get("s")
    assert fresh.data == {"by": "first"}
    fresh.status = "complete"
    fresh.save()
    assert row(db, schema_name, "s") == ("s", "complete", None, None, {"by": "first"})


def test_concurrent_saves_exactly_one_wins(pg_dsn: str, schema_name: str,
                                           db: psycopg.Connection[Any]) -> None:
    with pgcc.Client(pg_dsn, schema=schema_name, pool_size=8) as client:
        for round_ in range(5):
            state_id = f"race-{round_}"
            states = [client.taskstate.get(state_id) for _ in range(8)]

            def save(i: int, states: list[TaskState] = states) -> str:
                states[i].data = {"writer": i}
                states[i].save()
                return "saved"

            results = in_threads(8, save)
            winners = [i for i, r in enumerate(results) if r == "saved"]
            assert len(winners) == 1, results
            assert all(isinstance(r, pgcc.StaleTaskStateError)
                       for i, r in enumerate(results) if i != winners[0]), results
            assert row(db, schema_name, state_id) == \
                (state_id, "pending", None, None, {"writer": winners[0]})


def test_get_of_one_new_id_from_8_threads(pg_dsn: str, schema_name: str,
                                          db: psycopg.Connection[Any]) -> None:
    with pgcc.Client(pg_dsn, schema=schema_name, pool_size=8) as client:
        client.taskstate.get("warm-up")  # open the pool before the race
        for round_ in range(10):
            state_id = f"new-{round_}"

            def get(_i: int, state_id: str = state_id) -> TaskState:
                return client.taskstate.get(state_id)

            results = in_threads(8, get)
            assert all(isinstance(r, TaskState) for r in results), results
            assert {(r.id, r.status, r.created_at) for r in results} == \
                {(state_id, "pending", results[0].created_at)}
    ids = [r[0] for r in rows(db, schema_name)]
    assert sorted(ids) == sorted(["warm-up", *(f"new-{i}" for i in range(10))])


@pytest.mark.parametrize("bad_id", ["", "   ", "x" * 201, "tab\there", "nl\n", "nul\x00",
                                    None, 42, b"bytes"], ids=repr)
def test_a_bad_id_is_refused(client: pgcc.Client, db: psycopg.Connection[Any],
                             schema_name: str, bad_id: Any) -> None:
    with pytest.raises(pgcc.TaskStateError):
        client.taskstate.get(bad_id)
    assert rows(db, schema_name) == []


def test_ids_up_to_200_characters_and_any_printable_text(client: pgcc.Client) -> None:
    for state_id in ["x" * 200, "email:ada@example.com", "ünïcødé ✓", "'; DROP TABLE x; --"]:
        assert client.taskstate.get(state_id).id == state_id


def test_task_state_errors_are_pgcc_errors() -> None:
    assert issubclass(pgcc.TaskStateError, pgcc.PgccError)
    assert issubclass(pgcc.TaskStateError, ValueError)
    assert issubclass(pgcc.StaleTaskStateError, pgcc.PgccError)


# --- async --------------------------------------------------------------------------------


def test_async_get_save_round_trip_and_checks(pg_dsn: str, schema_name: str,
                                              db: psycopg.Connection[Any]) -> None:
    async def main() -> None:
        async with pgcc.AsyncClient(pg_dsn, schema=schema_name) as client:
            state = await client.taskstate.get("a-1")
            assert (state.status, state.error, state.tries_remaining, state.data) == \
                ("pending", None, None, {})
            state.status, state.error, state.tries_remaining = "started", "e", 2
            state.data = {"k": [1, 2]}
            await state.save()
            read = await client.taskstate.get("a-1")
            assert (read.status, read.error, read.tries_remaining, read.data) == \
                ("started", "e", 2, {"k": [1, 2]})

            read.status = "done"  # a typo: not a status
            with pytest.raises(pgcc.TaskStateError):
                await read.save()
            assert row(db, schema_name, "a-1") == ("a-1", "started", "e", 2, {"k": [1, 2]})

            with pytest.raises(pgcc.TaskStateError):
                await client.taskstate.get("x" * 201)
            with pytest.raises(pgcc.TaskStateError):
                await client.taskstate.get("")

    asyncio.run(main())
    assert [r[0] for r in rows(db, schema_name)] == ["a-1"]


def test_async_second_save_is_stale(pg_dsn: str, schema_name: str,
                                    db: psycopg.Connection[Any]) -> None:
    async def main() -> None:
        async with pgcc.AsyncClient(pg_dsn, schema=schema_name, pool_size=8) as client:
            first = await client.taskstate.get("s")
            second = await client.taskstate.get("s")
            first.status = "complete"
            await first.save()
            second.status = "failed"
            with pytest.raises(pgcc.StaleTaskStateError):
                await second.save()

            # Concurrent saves at one version: exactly one wins.
            states = [await client.taskstate.get("t") for _ in range(8)]
            for i, state in enumerate(states):
                state.data = {"writer": i}
            results = await asyncio.gather(*(s.save() for s in states), return_exceptions=True)
            winners = [i for i, r in enumerate(results) if r is None]
            assert len(winners) == 1, results
            assert all(isinstance(r, pgcc.StaleTaskStateError)
                       for r in results if r is not None)
            assert (await client.taskstate.get("t")).data == {"writer": winners[0]}

    asyncio.run(main())
    assert row(db, schema_name, "s") == ("s", "complete", None, None, {})


def test_async_get_of_one_new_id_concurrently(pg_dsn: str, schema_name: str,
                                              db: psycopg.Connection[Any]) -> None:
    async def main() -> None:
        async with pgcc.AsyncClient(pg_dsn, schema=schema_name, pool_size=8) as client:
            await client.taskstate.get("warm-up")
            for round_ in range(10):
                results = await asyncio.gather(
                    *(client.taskstate.get(f"new-{round_}") for _ in range(8)))
                assert {(r.id, r.status) for r in results} == {(f"new-{round_}", "pending")}

    asyncio.run(main())
    assert len(rows(db, schema_name)) == 11
