"""The Python and CLI doors that see and act on jobs: list_jobs, get_job,
cancel_job, retry_job, wait_for; `pgcc jobs`, `pgcc job`, `pgcc cancel`,
`pgcc retry`, and how they refuse bad input."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg
import pytest

import pgcc
from pgcc.errors import JobFilterError, UnknownJobError
from tests.paths import run_cli


def cli(pg_dsn: str, schema: str, *args: str) -> Any:
    return run_cli(*args, "--dsn", pg_dsn, "--schema", schema)


def test_list_jobs_filters_by_state_task_and_queue_newest_first(client: pgcc.Client) -> None:
    a = client.schedule_task("a", {}, queue="q1")
    b = client.schedule_task("b", {}, queue="q2")
    c = client.schedule_task("a", {})
    client.cancel_job(b)
    assert [j.id for j in client.list_jobs()] == [c, b, a]
    assert [j.id for j in client.list_jobs(task="a")] == [c, a]
    assert [j.id for j in client.list_jobs(queue="q1")] == [a]
    assert [j.id for j in client.list_jobs("cancelled")] == [b]
    assert [j.id for j in client.list_jobs(pgcc.JobState.QUEUED, task="a", limit=1)] == [c]
    job = client.list_jobs(queue="q2")[0]
    assert isinstance(job, pgcc.Job) and job.state is pgcc.JobState.CANCELLED
    assert job.finished and job.history == [] and job.cancel_requested_at is None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"state": "finished"}, "unknown job state: 'finished'; choose one of queued, running"),
    ({"limit": 0}, "limit must be a whole number from 1 to 100000, not 0"),
    ({"limit": "5"}, "limit must be a whole number"),
    ({"task": 5}, "task must be a string, not int"),
])
def test_list_jobs_refuses_bad_filters(client: pgcc.Client, kwargs: dict[str, Any],
                                       message: str) -> None:
    with pytest.raises(JobFilterError, match=message):
        client.list_jobs(**kwargs)
    assert issubclass(JobFilterError, ValueError) and issubclass(JobFilterError, pgcc.PgccError)


def test_cancel_and_retry_from_python(client: pgcc.Client) -> None:
    job = client.schedule_task("t", {"n": 1}, queue="q")
    assert client.retry_job(job) is False  # not finished
    assert client.cancel_job(job) is True
    assert client.cancel_job(job) is False  # already finished
    assert client.wait_for(job, timeout=1).state == "cancelled"
    assert client.retry_job(job) is True
    again = client.get_job(job)
    assert again is not None
    assert (again.state, again.attempts, [r["state"] for r in again.history]) == \
        ("queued", 0, ["cancelled"])
    assert client.cancel_job(10**12) is False and client.retry_job(10**12) is False
    assert client.get_job(10**12) is None
    with pytest.raises(UnknownJobError, match="no job 1000000000000"):
        client.wait_for(10**12)
    with pytest.raises(JobFilterError, match="timeout must be"):
        client.wait_for(job, timeout=-1)
    with pytest.raises(JobFilterError, match="a job id is a whole number, not str"):
        client.cancel_job("1")  # type: ignore[arg-type]


def test_retry_jobs_retries_one_finished_state_in_queue_order(client: pgcc.Client) -> None:
    first, second, other = (client.schedule_task("t", {}, queue="q"),
                            client.schedule_task("t", {}, queue="q"),
                            client.schedule_task("u", {}))
    for job in (first, second, other):
        client.cancel_job(job)
    assert client.retry_jobs("cancelled", task="t") == [first, second]
    assert client.get_job(other).state == "cancelled"  # type: ignore[union-attr]
    with pytest.raises(JobFilterError, match="job state not allowed here: 'queued'"):
        client.retry_jobs("queued")


def test_the_async_client_does_the_same(pg_dsn: str, schema_name: str) -> None:
    async def run() -> None:
        async with pgcc.AsyncClient(pg_dsn, schema=schema_name) as client:
            job = await client.schedule_task("t", {})
            assert [j.id for j in await client.list_jobs(task="t")] == [job]
            assert await client.cancel_job(job) is True
            assert (await client.wait_for(job, timeout=1)).state == "cancelled"
            assert await client.retry_job(job) is True
            assert await client.retry_job(job) is False
            assert await client.retry_jobs("failed") == []
            got = await client.get_job(job)
            assert got is not None and got.state == "queued"
            with pytest.raises(JobFilterError):
                await client.list_jobs(state="nope")
    asyncio.run(run())


def test_pgcc_cancel_takes_many_ids_and_says_why_each_refused_one_failed(
        pg_dsn: str, schema_name: str, client: pgcc.Client) -> None:
    a, b = client.schedule_task("t", {}), client.schedule_task("t", {})
    client.cancel_job(b)
    result = cli(pg_dsn, schema_name, "cancel", str(a), str(b), "999999")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [f"job {a} cancelled"]
    assert result.stderr.splitlines() == [f"pgcc: job {b} not cancelled: it is cancelled",
                                          "pgcc: job 999999 not cancelled: no such job"]


def test_pgcc_retry_by_ids_and_by_state(pg_dsn: str, schema_name: str,
                                        client: pgcc.Client) -> None:
    a, b = client.schedule_task("t", {}), client.schedule_task("t", {})
    client.cancel_job(a)
    result = cli(pg_dsn, schema_name, "retry", str(a), str(b))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [f"job {a} retried"]
    assert result.stderr.splitlines() == [f"pgcc: job {b} not retried: it is queued, "
                                          "not finished"]
    result = cli(pg_dsn, schema_name, "retry", "--state", "dead")
    assert (result.returncode, result.stdout.strip()) == (0, "0 dead job(s) retried")


@pytest.mark.parametrize(("args", "message"), [
    (("retry",), "pgcc: give job ids, or --state failed|dead"),
    (("retry", "1", "--state", "failed"), "pgcc: give job ids or --state, not both"),
    (("retry", "--task", "t"), "pgcc: --task and --queue go with --state"),
    (("retry", "--state", "done"),
     "pgcc: job state not allowed here: 'done'; choose one of dead, failed"),
    (("jobs", "--state", "finished"), "pgcc: unknown job state: 'finished'"),
    (("jobs", "--limit", "0"), "pgcc: limit must be a whole number from 1 to 100000, not 0"),
])
def test_the_cli_refuses_bad_input_with_exit_2_and_one_line(
        pg_dsn: str, schema_name: str, client: pgcc.Client, db: psycopg.Connection[Any],
        args: tuple[str, ...], message: str) -> None:
    job = client.schedule_task("t", {})
    client.cancel_job(job)
    result = cli(pg_dsn, schema_name, *args)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(message)
    # Nothing was written: the cancelled job is still cancelled.
    assert client.get_job(job).state == "cancelled"  # type: ignore[union-attr]
    bad = run_cli("cancel", "x", "--dsn", pg_dsn, "--schema", schema_name)
    assert bad.returncode == 2


def test_pgcc_jobs_and_job_show_jobs(pg_dsn: str, schema_name: str,
                                     client: pgcc.Client) -> None:
    a = client.schedule_task("alpha", {"x": 1}, queue="q")
    b = client.schedule_task("beta", {})
    client.cancel_job(b)
    client.retry_job(b)
    listed = cli(pg_dsn, schema_name, "jobs")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:5] == ["ID", "STATE", "TASK", "QUEUE", "ATTEMPTS"]
    assert [line.split()[:4] for line in lines[1:]] == [[str(b), "queued", "beta", "-"],
                                                        [str(a), "queued", "alpha", "q"]]
    as_json = cli(pg_dsn, schema_name, "jobs", "--task", "alpha", "--json")
    assert as_json.returncode == 0, as_json.stderr
    (only,) = json.loads(as_json.stdout)
    assert (only["id"], only["parameters"], only["state"], only["queue"]) == \
        (a, {"x": 1}, "queued", "q")
    assert cli(pg_dsn, schema_name, "jobs", "--state", "dead").stdout.strip() == "no jobs"

    shown = cli(pg_dsn, schema_name, "job", str(b))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == f"job {b}: beta"
    assert "state:        queued" in shown.stdout
    assert "earlier runs (before a retry):" in shown.stdout
    assert "1. cancelled after 0 attempt(s)" in shown.stdout
    detail = json.loads(cli(pg_dsn, schema_name, "job", str(a), "--json").stdout)
    assert (detail["id"], detail["task"], detail["parameters"], detail["attempts"]) == \
        (a, "alpha", {"x": 1}, 0)
    missing = cli(pg_dsn, schema_name, "job", "999999")
    assert (missing.returncode, missing.stderr.strip()) == (1, "pgcc: no job 999999")
