"""The worker's claim statement with two sessions at once, on a real PostgreSQL.

A worker claims with `FOR UPDATE SKIP LOCKED` (jobs without a queue) and a
per-queue advisory lock (queue heads). These tests hold one session's locks
open while another claims, which a worker under load does all the time.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import pgcc
from pgcc._database import Link, StatementFailed
from pgcc._queries import Queries, for_schema, lock_space, queue_lock_space
from pgcc._worker.exchange import FRONT
from pgcc._worker.messages import JobState, Response
from pgcc._worker.outcomes import OutcomeWriter
from tests.conftest import fresh_schema
from tests.workers import finish_as_worker


class Claimer:
    """Runs the worker's named queries as one registered worker."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.queries: Queries = for_schema(schema)
        self.space = queue_lock_space(schema)
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.worker = self.run("register_worker", hostname="test", pid=1, tasks=["t"],
                               concurrency=1, lease=30)[0][0]

    def run(self, name: str, **params: Any) -> list[tuple[Any, ...]]:
        params.setdefault("queue_lock_space", self.space)
        return self.conn.execute(self.queries[name], params).fetchall()

    def finish(self, outcomes: list[list[Any]]) -> list[tuple[Any, ...]]:
        """As the worker writes responses ([id, token, state, result, error]),
        with no room for a queue's next job: the ids written."""
        return finish_as_worker(self.conn, self.queries, self.worker, outcomes)

    def claim(self, limit: int, after: tuple[str, int] = FRONT) -> list[tuple[Any, ...]]:
        """As the worker claims: the touched queues taken in, then the claim."""
        self.run("take_in_touched_queues", batch=1000)
        return self.run("claim", worker=self.worker, tasks=["t"], max_attempts=[10],
                        limit=limit, head_limit=limit, head_scan=2 * limit + 8,
                        free_after_run_at=after[0],
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
        # The claim finds the head still queued in its snapshot, but its row
        # locked by the cancel: it leaves it, without waiting (a claim waits
        # for no other transaction).
        claiming = threading.Thread(target=lambda: claimed.append(second.claim(limit=1)))
        claiming.start()
        claiming.join(timeout=5)
        assert not claiming.is_alive(), "the claim waited for the cancel"
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
    back = claimer.run("release", worker=claimer.worker, ids=[ids[0]], tokens=[taken[0][6]],
                       started=[False])
    assert back == [(ids[0],)]
    assert [row[0] for row in claimer.claim(limit=1, after=position)] == [ids[2]]
    assert [row[0] for row in claimer.claim(limit=1)] == [ids[0]]
    assert [row[0] for row in claimer.claim(limit=5, after=position)] == [ids[3]]


def test_the_workers_queries_fit_psycopgs_parse_cache_for_the_longest_schema_name() -> None:
    # psycopg parses a query for its placeholders on every run unless it is at
    # most 4 kB (then it caches the parse): the claim runs many times a second.
    queries = for_schema("s" * 63)
    for name in ("claim", "finish", "finish_in_queues", "refresh_heads",
                 "take_in_touched_queues", "retry", "release", "next_due", "heartbeat", "reap"):
        assert len(queries[name].encode()) <= 4096, name


def test_a_queue_whose_name_hashes_to_zero_runs_while_pgcc_holds_its_locks(
        client: pgcc.Client, claimers: tuple[Claimer, Claimer]) -> None:
    """Queue locks live in a key space of their own: pgcc's own locks, the
    migrations' (space, 1) and the maintenance leadership's of schema versions
    before 13 (space, 0), never block a queue."""
    first, second = claimers
    zero = "queue-tGakGc"
    assert first.conn.execute("SELECT hashtext(%s)", [zero]).fetchone() == (0,)
    leader = lock_space(first.queries.schema)
    second.conn.execute("SELECT pg_advisory_lock(%s, 0), pg_advisory_lock(%s, 1)",
                        [leader, leader])
    job = client.schedule_task("t", {}, queue=zero)
    assert [row[0] for row in first.claim(limit=1)] == [job]


def test_each_claim_gets_a_token_no_earlier_claim_had(
        client: pgcc.Client, claimers: tuple[Claimer, Claimer]) -> None:
    """Putting a job back (which gives its attempt back) does not give its token
    back: the earlier claim's late answer is fenced off."""
    claimer, _ = claimers
    job = client.schedule_task("t", {})
    tokens = []
    for _ in range(5):
        ((job_id, _, _, _, attempt, _, token, *_),) = claimer.claim(limit=1)
        assert (job_id, attempt) == (job, 1)
        tokens.append(token)
        assert claimer.run("release", worker=claimer.worker, ids=[job], tokens=[token],
                           started=[False]) == [(job,)]
    assert len(set(tokens)) == len(tokens)
    ((_, _, _, _, _, _, token, *_),) = claimer.claim(limit=1)
    for old in tokens:
        assert claimer.finish([[job, old, "done", '"stale"', None]]) == []
    assert claimer.finish([[job, token, "done", '"fresh"', None]]) == [(job,)]
    assert client.get_job(job).result == "fresh"  # type: ignore[union-attr]


def test_a_claim_never_trips_the_one_running_job_per_queue_index(
        pg_dsn: str, schema_name: str, client: pgcc.Client,
        claimers: tuple[Claimer, Claimer]) -> None:
    """Two sessions claim and finish as fast as they can while slow enqueue
    transactions commit jobs that sort ahead of their queue's current head (the
    scheduled time is the transaction's start), beside thousands of blocked
    queues. Each claim takes in the touched queues first, so heads change under
    the other session's feet. No claim may fail, and no queue may ever have two
    running jobs."""
    client.schedule_tasks({"task": "nobody-runs-this", "queue": f"blocked-{n}"}
                          for n in range(4000))
    queues = [f"q{n}" for n in range(3)]
    for queue in queues:
        client.schedule_task("t", {}, queue=queue)
    errors: list[BaseException] = []
    stop = threading.Event()

    def claim_and_finish(claimer: Claimer) -> None:
        """Claims, runs what it got for 20 ms (so that a queue stays busy a while),
        finishes it."""
        try:
            while not stop.is_set():
                rows = claimer.claim(limit=4)
                outcomes = [[row[0], row[6], "done", "null", None, row[3]] for row in rows]
                time.sleep(0.02 if outcomes else 0.001)
                if outcomes:
                    claimer.finish(outcomes)
                    # A queue left free a while: the walk's snapshot may see it so.
                    time.sleep(0.01)
        except BaseException as exc:
            errors.append(exc)

    def enqueue_late() -> None:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            n = 0
            while not stop.is_set():
                with conn.transaction():
                    conn.execute("SELECT now()")  # fixes the transaction's start
                    time.sleep(random.uniform(0, 0.03))
                    conn.execute(f'SELECT "{schema_name}".schedule_task(\'t\', \'{{}}\', '
                                 "NULL, NULL, %s)", [queues[n % len(queues)]])
                n += 1
                # Fewer jobs than the claims can take: queues stay short, so a
                # late job often sorts ahead of the head.
                time.sleep(random.uniform(0.02, 0.05))

    threads = [threading.Thread(target=claim_and_finish, args=(claimer,))
               for claimer in claimers]
    threads += [threading.Thread(target=enqueue_late) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(4)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    running = claimers[0].conn.execute(
        f'SELECT queue, count(*) FROM "{schema_name}".jobs WHERE state = \'running\' '
        "GROUP BY queue HAVING count(*) > 1").fetchall()
    assert running == []
    done = claimers[0].conn.execute(
        f'SELECT count(*) FROM "{schema_name}".jobs WHERE state = \'done\'').fetchone()
    assert done is not None and done[0] > 20, "the claims should have kept running jobs"


def test_outcomes_commit_before_a_claim_that_fails(
        pg_dsn: str, client: pgcc.Client, claimers: tuple[Claimer, Claimer]) -> None:
    """The worker sends outcomes and its next claim in one round trip but two
    transactions: a claim that fails, for whatever reason, leaves the outcomes
    written (and says so), and a failing outcome keeps the claim from running."""
    claimer, _ = claimers
    job, other = client.schedule_task("t", {}), client.schedule_task("t", {})
    ((_, _, _, _, _, _, token, *_),) = claimer.claim(limit=1)
    writer = OutcomeWriter(claimer.queries, ["t"], [10])
    writer.add([Response(job, token, JobState.DONE, '"kept"', None)])
    finish = writer.statements(claimer.worker, 0)
    failing_claim = ("claim", "SELECT 1 / 0", None)
    link = Link(pg_dsn)
    try:
        with pytest.raises(StatementFailed) as failed:
            link.transactions([finish, [failing_claim]])
        assert failed.value.name == "claim" and failed.value.committed == 1
        writer.written(failed.value.results[0])
        assert len(writer) == 0
        assert client.get_job(job).result == "kept"  # type: ignore[union-attr]
        # The other way round: the claim is not run after a failing write.
        bad_write = ("finish", "SELECT 1 / 0", None)
        claim = ("claim", claimer.queries["claim"], {
            "worker": claimer.worker, "tasks": ["t"], "max_attempts": [10], "limit": 1,
            "head_limit": 1, "head_scan": 10, "queue_lock_space": claimer.space,
            "free_after_run_at": FRONT[0], "free_after_id": FRONT[1]})
        with pytest.raises(StatementFailed) as failed:
            link.transactions([[bad_write], [claim]])
        assert failed.value.name == "finish" and failed.value.committed == 0
        assert client.get_job(other).state == "queued"  # type: ignore[union-attr]
        assert link.connected, "a refused statement leaves the session usable"
    finally:
        link.close()


def blocked_queues(client: pgcc.Client, claimer: Claimer, each: int) -> None:
    """`each` queues of each kind a claim cannot take a head of: a task no worker
    has, not due for an hour, and running (with a job waiting behind)."""
    unknown: list[dict[str, Any]] = [{"task": "nobody-runs-this", "queue": f"unknown-{n}"}
                                     for n in range(each)]
    client.schedule_tasks(unknown
                          + [{"task": "t", "queue": f"later-{n}", "after": 3_600_000}
                             for n in range(each)]
                          + [{"task": "t", "queue": f"busy-{n}"} for n in range(each)] * 2)
    take_in_all(claimer)
    while len(claimer.claim(limit=1000)) == 1000:
        pass


def take_in_all(claimer: Claimer) -> None:
    """What a bulk enqueue touched, taken in at once (claims take 1,000 jobs a time)."""
    while (taken := claimer.run("take_in_touched_queues", batch=1000)) and taken[0][0]:
        pass


def claim_buffers(claimer: Claimer) -> tuple[int, int]:
    """Shared buffers one claim of 10 jobs (one of them a queue head) reads: in
    all, and to find the queue heads it takes."""
    params = dict(worker=claimer.worker, tasks=["t"], max_attempts=[10], limit=10,
                  head_limit=10, head_scan=28, queue_lock_space=claimer.space,
                  free_after_run_at=FRONT[0], free_after_id=FRONT[1])
    take_in_all(claimer)
    # The head rows of the queues claimed while setting up left dead index
    # entries, vacuum's to remove (autovacuum's, in production).
    claimer.conn.execute(f"VACUUM ANALYZE {claimer.queries.schema}.queue_heads")
    claimer.conn.execute("ANALYZE")
    with claimer.conn.transaction(force_rollback=True):
        ((plan,),) = claimer.conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + claimer.queries["claim"],
            params).fetchall()
    top = plan[0]["Plan"]
    assert top["Actual Rows"] == 10

    def read(node: dict[str, Any]) -> int:
        return int(node["Shared Hit Blocks"] + node["Shared Read Blocks"])

    (ready,) = [node for node in top["Plans"] if node.get("Subplan Name") == "CTE ready"]
    return read(top), read(ready)


def test_a_claim_costs_the_same_with_10000_blocked_queues_as_with_one(
        pg_dsn: str, client: pgcc.Client, claimers: tuple[Claimer, Claimer]) -> None:
    """Counted in buffers read, not in time: a claim beside 10,000 queues whose
    heads are blocked (task unknown, not due, running) reads about as much to
    find its queue heads as beside one of each. (The claim that walked every queue
    read at least one index page per queue.) In all it reads a little more,
    for deeper indexes on a larger table."""
    few, _ = claimers
    blocked_queues(client, few, 1)
    client.schedule_tasks([{"task": "t", "queue": "free"}] + [{"task": "t"}] * 9)
    with fresh_schema(pg_dsn) as other, pgcc.Client(pg_dsn, schema=other) as other_client:
        many = Claimer(pg_dsn, other)
        try:
            blocked_queues(other_client, many, 3334)
            other_client.schedule_tasks([{"task": "t", "queue": "free"}] + [{"task": "t"}] * 9)
            (all_many, heads_many) = claim_buffers(many)
        finally:
            many.conn.close()
    (all_few, heads_few) = claim_buffers(few)
    # A level or two more in each index read (the head index, the jobs' key).
    assert heads_many <= heads_few + 6, (heads_few, heads_many)
    assert all_many <= 3 * all_few, (all_few, all_many)


def test_a_worker_that_planned_on_an_empty_table_still_claims_by_index(
        pg_dsn: str, schema_name: str, client: pgcc.Client) -> None:
    """A worker's session keeps its plans. Ones made while the jobs table was
    empty (a fresh deployment) must not read the whole table on every claim
    once it has filled: that cost grew with the backlog (W5 with 20,000
    waiting jobs ran at a third of its speed)."""
    link = Link(pg_dsn, application_name="pgcc worker", generic_plans=True)
    queries = for_schema(schema_name)
    space = queue_lock_space(schema_name)
    worker = link.execute(queries["register_worker"], {
        "hostname": "test", "pid": 1, "tasks": ["t"], "concurrency": 1, "lease": 30})[0][0]

    def claim() -> list[tuple[Any, ...]]:
        link.execute(queries["take_in_touched_queues"],
                     {"queue_lock_space": space, "batch": 1000})
        return link.execute(queries["claim"], {
            "worker": worker, "tasks": ["t"], "max_attempts": [10], "limit": 4,
            "head_limit": 4, "head_scan": 16, "queue_lock_space": space,
            "free_after_run_at": FRONT[0], "free_after_id": FRONT[1]})

    try:
        for _ in range(8):  # psycopg prepares a statement from its fifth run
            assert claim() == []
        client.schedule_tasks([{"task": "t"}] * 2000
                              + [{"task": "t", "queue": f"q{i % 50}"} for i in range(1000)])
        conn = link.connection()
        with conn.transaction():
            claimed = claim()
            scans = conn.execute(
                "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relid = %s::regclass",
                [f"{schema_name}.jobs"]).fetchone()
    finally:
        link.close()
    assert len(claimed) == 4
    assert scans == (0,)
