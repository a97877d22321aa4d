"""The worker's claim statement with two sessions at once, on a real PostgreSQL.

A worker claims with `FOR UPDATE SKIP LOCKED` (jobs without a queue) and a
per-queue advisory lock (queue heads). These tests hold one session's locks
open while another claims, which a worker under load does all the time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import pgcc
from pgcc.queries import Queries, for_schema, lock_space
from pgcc.worker.exchange import FRONT


class Claimer:
    """Runs the worker's named queries as one registered worker."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.queries: Queries = for_schema(schema)
        self.space = lock_space(schema)
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.worker = self.run("register_worker", hostname="test", pid=1, tasks=["t"],
                               concurrency=1, lease=30)[0][0]

    def run(self, name: str, **params: Any) -> list[tuple[Any, ...]]:
        return self.conn.execute(self.queries[name], params).fetchall()

    def claim(self, limit: int, after: tuple[str, int] = FRONT
              ) -> list[tuple[Any, ...]]:
        return self.run("claim", worker=self.worker, tasks=["t"], max_attempts=[10],
                        limit=limit, head_limit=limit, queues=[], search=True,
                        lock_space=self.space, free_after_run_at=after[0],
                        free_after_id=after[1])


@pytest.fixture
def claimers(pg_dsn: str, schema_name: str) -> Iterator[tuple[Claimer, Claimer]]:
    first, second = Claimer(pg_dsn, schema_name), Claimer(pg_dsn, schema_name)
    yield first, second
    first.conn.close()
    second.conn.close()


def test_jobs_another_claim_holds_do_not_use_up_the_limit(
        client: pgcc.Client, claimers: tuple[Claimer, Claimer]) -> None:
    first, second = claimers
    ids = [client.schedule_task("t", {}) for _ in range(4)]
    with first.conn.transaction():
        taken_first = [row[0] for row in first.claim(limit=2)]
        # The first claim has not committed: its rows are locked, and skipped.
        taken_second = [row[0] for row in second.claim(limit=2)]
    assert taken_first == ids[:2]
    assert sorted(taken_second) == ids[2:]


def test_a_cancel_that_commits_during_a_claim_wins(
        client: pgcc.Client, db: psycopg.Connection[Any], schema_name: str,
        claimers: tuple[Claimer, Claimer]) -> None:
    first, second = claimers
    head = client.schedule_task("t", {}, queue="q")
    claimed: list[list[tuple[Any, ...]]] = []
    with first.conn.transaction():
        first.conn.execute(f'SELECT "{schema_name}".cancel_job(%s)', [head])
        # The claim finds the head still queued in its snapshot, and waits for the
        # cancel's row lock before it may update the row.
        claiming = threading.Thread(target=lambda: claimed.append(second.claim(limit=1)))
        claiming.start()
        claiming.join(timeout=0.5)
        assert claiming.is_alive(), "the claim should wait for the cancel's row lock"
    claiming.join(timeout=10)
    assert claimed == [[]]
    assert client.get_job(head).state == "cancelled"  # type: ignore[union-attr]
    locks = db.execute(f'SELECT count(*) FROM "{schema_name}".queue_locks').fetchone()
    assert locks == (0,)


def test_a_claim_reads_on_from_its_position_and_from_the_front_when_asked(
        client: pgcc.Client, claimers: tuple[Claimer, Claimer]) -> None:
    """Through a backlog a worker claims on from the last job it took; a job put
    back before that position is found by a claim from the front."""
    claimer, _ = claimers
    ids = [client.schedule_task("t", {}) for _ in range(4)]
    taken = claimer.claim(limit=2)
    assert [row[0] for row in taken] == ids[:2]
    position = max((row[5], row[0]) for row in taken)
    back = claimer.run("release", worker=claimer.worker, ids=[ids[0]], attempts=[1],
                       started=[False])
    assert back == [(ids[0],)]
    assert [row[0] for row in claimer.claim(limit=1, after=position)] == [ids[2]]
    assert [row[0] for row in claimer.claim(limit=1)] == [ids[0]]
    assert [row[0] for row in claimer.claim(limit=5, after=position)] == [ids[3]]


def test_the_workers_queries_fit_psycopgs_parse_cache_for_the_longest_schema_name() -> None:
    # psycopg parses a query for its placeholders on every run unless it is at
    # most 4 kB (then it caches the parse): the claim runs many times a second.
    queries = for_schema("s" * 63)
    for name in ("claim", "finish", "retry", "release", "next_due", "heartbeat", "reap"):
        assert len(queries[name].encode()) <= 4096, name
