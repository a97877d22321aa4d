"""The example tasks of tasks/, each on a real `pgcc worker` with the repo's tasks folder,
each reaching the end state its docstring promises; and the taskstate pattern running its
body once when its job is delivered twice.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import shutil
import zoneinfo
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import pgcc
from tests import workers
from tests.paths import MISC_TASKS, run_cli
from tests.workers import WorkerFactory, copy_tasks, finished, job_states, wait_for

FAST = (*workers.FAST, "--concurrency", "4")


@pytest.fixture
def tasks_dir(repo_root: Path, tmp_path: Path) -> Path:
    """The example tasks but the periodic one: a worker of these tests must not
    schedule its real tick (09:45 in Berlin) in the middle of one of them."""
    folder = tmp_path / "examples"
    shutil.copytree(repo_root / "tasks", folder, ignore=shutil.ignore_patterns(
        "standup_reminder.py", "__pycache__"))
    return folder


def state_reaches(client: pgcc.Client, state_id: str, status: str = "complete",
                  timeout: float = 30) -> Any:
    def check() -> Any:
        state = client.taskstate.get(state_id)
        return state if state.status == status else None
    return wait_for(check, timeout, f"task state {state_id!r} to be {status}")


def all_final(db: psycopg.Connection[Any], schema: str) -> dict[str, int]:
    def check() -> dict[str, int] | None:
        states = job_states(db, schema)
        return None if states.get("queued") or states.get("running") else states
    return wait_for(check, 30, "every job to finish")


def jobs(db: psycopg.Connection[Any], schema: str, task: str) -> list[dict[str, Any]]:
    cur = db.cursor(row_factory=psycopg.rows.dict_row)
    query = sql.SQL("SELECT * FROM {}.jobs WHERE task = %s ORDER BY id").format(
        sql.Identifier(schema))
    return cur.execute(query, [task]).fetchall()


def taskstate_ids(db: psycopg.Connection[Any], schema: str, prefix: str) -> list[str]:
    query = sql.SQL("SELECT id FROM {}.taskstate WHERE starts_with(id, %s) ORDER BY id").format(
        sql.Identifier(schema))
    return [row[0] for row in db.execute(query, [prefix]).fetchall()]


def test_every_example_has_a_docstring_and_a_readme_line(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    for path in sorted((repo_root / "tasks").glob("*.py")):
        source = path.read_text()
        assert source.startswith('"""'), f"{path.name} has no module docstring"
        if path.stem != "fan_out_piece":  # a helper of fan_out
            assert f"tasks/{path.name}" in readme, f"README does not link {path.name}"
            assert f"pgcc schedule {path.stem} " in readme, f"README cannot run {path.name}"


def test_othertask(tasks_dir: Path, client: pgcc.Client, start_worker: WorkerFactory) -> None:
    worker = start_worker(tasks_dir, *FAST)
    job = finished(client, client.schedule_task("othertask", {"myvalue": 42}))
    assert (job.state, job.result) == ("done", {"myvalue": 42})
    wait_for(lambda: "othertask got myvalue=42" in worker.log(), 10, "othertask's print")


def test_split_work_schedules_itself_until_done(
        tasks_dir: Path, client: pgcc.Client, db: psycopg.Connection[Any], schema_name: str,
        start_worker: WorkerFactory) -> None:
    start_worker(tasks_dir, *FAST)
    first = client.schedule_task("split_work", {"total": 10, "chunk": 3})
    state = state_reaches(client, f"split_work:{first}")
    expected = {"total": 10, "processed": 10, "pieces": 4, "sum": sum(i * i for i in range(10))}
    assert state.data == expected
    all_final(db, schema_name)
    pieces = jobs(db, schema_name, "split_work")
    assert [p["state"] for p in pieces] == ["done"] * 4
    assert [p["parameters"].get("offset", 0) for p in pieces] == [0, 3, 6, 9]
    assert [p["queue"] for p in pieces] == [None] * 4
    assert [p["result"]["processed"] for p in pieces] == [3, 6, 9, 10]

    # A piece delivered again skips the work it already did and carries on to the end.
    again = client.schedule_task("split_work", {"total": 10, "chunk": 3,
                                                "state_id": f"split_work:{first}"})
    assert finished(client, again).state == "done"
    all_final(db, schema_name)
    assert [p["state"] for p in jobs(db, schema_name, "split_work")] == ["done"] * 8
    assert client.taskstate.get(f"split_work:{first}").data == expected


def test_split_work_delivered_again_starts_no_second_chain(
        tasks_dir: Path, tmp_path: Path, client: pgcc.Client, db: psycopg.Connection[Any],
        schema_name: str, start_worker: WorkerFactory) -> None:
    """The second piece dies right after scheduling the third (its step
    committed): delivered again, it finds the step recorded and schedules nothing."""
    test_tasks = copy_tasks(tmp_path / "tasks", MISC_TASKS, "crashing_split")
    shutil.copy(tasks_dir / "split_work.py", test_tasks / "_split_work.py")
    start_worker(test_tasks, *FAST)
    client.schedule_task("crashing_split", {"total": 10, "chunk": 3,
                                            "state_id": "split"})
    state = state_reaches(client, "split")
    all_final(db, schema_name)
    pieces = jobs(db, schema_name, "crashing_split")
    assert [p["parameters"].get("offset", 0) for p in pieces] == [0, 3, 6, 9]
    assert [(p["state"], p["attempts"]) for p in pieces] == [
        ("done", 1), ("done", 2), ("done", 1), ("done", 1)]
    assert state.data == {"total": 10, "processed": 10, "pieces": 4,
                          "sum": sum(i * i for i in range(10))}


def test_charge_once_charges_once_across_a_crash(
        tasks_dir: Path, client: pgcc.Client, db: psycopg.Connection[Any], schema_name: str,
        start_worker: WorkerFactory) -> None:
    start_worker(tasks_dir, *FAST)
    table = f"{schema_name}.payments"
    job = finished(client, client.schedule_task("charge_once", {
        "order": "order-1", "amount": 25, "table": table, "crash_once": True}))
    assert (job.state, job.attempts) == ("done", 2), job.error
    payments = db.execute(sql.SQL("SELECT id, order_id, amount, attempt FROM {}").format(
        sql.Identifier(schema_name, "payments"))).fetchall()
    assert [(order, int(amount), attempt) for _, order, amount, attempt in payments] == [
        ("order-1", 25, 1)]
    assert job.result is not None and job.result["payment"] == payments[0][0]
    receipt = finished(client, job.result["receipt_job"])
    assert (receipt.task, receipt.state) == ("send_email", "done")
    assert receipt.parameters["subject"] == "Receipt for order-1"
    assert len(jobs(db, schema_name, "send_email")) == 1
    assert [s.name for s in client.get_steps(job.id)] == ["charge", "receipt"]


def test_signup_reuses_send_email(tasks_dir: Path, client: pgcc.Client,
                                  db: psycopg.Connection[Any], schema_name: str,
                                  start_worker: WorkerFactory) -> None:
    start_worker(tasks_dir, *FAST)
    signup = client.schedule_task("signup", {"email": "ada@example.com", "name": "Ada"})
    email_job = finished(client, signup).result["email_job"]
    assert finished(client, email_job).result == \
        {"message_id": "welcome:ada@example.com", "sent": True}
    user = client.taskstate.get("user:ada@example.com")
    assert (user.status, user.data) == ("complete", {"email": "ada@example.com", "name": "Ada"})
    outbox = client.taskstate.get("email:welcome:ada@example.com")
    assert outbox.status == "complete"
    assert outbox.data == {"to": "ada@example.com", "subject": "Welcome, Ada",
                           "body": "Thanks for signing up.", "job_id": email_job}

    # Delivered twice, the signup schedules the email again, which is not sent again.
    second = client.schedule_task("signup", {"email": "ada@example.com", "name": "Ada"})
    email_again = finished(client, second).result["email_job"]
    assert finished(client, email_again).result == \
        {"message_id": "welcome:ada@example.com", "sent": False, "reason": "already sent"}
    assert client.taskstate.get("email:welcome:ada@example.com").data["job_id"] == email_job

    # Anyone may use the shared task; without a message id, the job's id names the message.
    direct = client.schedule_task("send_email", {"to": "bob@example.com", "subject": "Hi"})
    assert finished(client, direct).state == "done"
    assert client.taskstate.get(f"email:job-{direct}").data["to"] == "bob@example.com"
    assert all_final(db, schema_name) == {"done": 5}
    assert len(taskstate_ids(db, schema_name, "email:")) == 2


def test_fan_out_runs_pieces_in_parallel_and_fans_in_once(
        tasks_dir: Path, client: pgcc.Client, db: psycopg.Connection[Any], schema_name: str,
        start_worker: WorkerFactory) -> None:
    start_worker(tasks_dir, *FAST)
    start_worker(tasks_dir, *FAST)
    runs = [client.schedule_task("fan_out", {"pieces": 8, "notify": "ops@example.com"})
            for _ in range(3)]
    for run in runs:
        summary = state_reaches(client, f"fan_out:{run}")
        assert summary.data["pieces"] == 8
        assert summary.data["total"] == sum(i * 10 for i in range(8))
    states = all_final(db, schema_name)
    assert set(states) == {"done"}, states  # no piece failed, even when two fanned in at once
    for run in runs:
        pieces = [client.taskstate.get(f"fan_out:{run}:{i}") for i in range(8)]
        assert [p.status for p in pieces] == ["complete"] * 8
        assert [p.data["result"] for p in pieces] == [i * 10 for i in range(8)]
        report = client.taskstate.get(f"email:fan_out:{run}")
        assert report.status == "complete"
        assert report.data["body"] == "total 280"
    assert len(jobs(db, schema_name, "fan_out_piece")) == 24
    # One report per run: an email job may be scheduled twice, but is sent once.
    sent = [j for j in jobs(db, schema_name, "send_email") if j["result"]["sent"]]
    assert sorted(j["result"]["message_id"] for j in sent) == \
        sorted(f"fan_out:{run}" for run in runs)


def test_serial_queue_runs_one_at_a_time_in_order(
        tasks_dir: Path, client: pgcc.Client, db: psycopg.Connection[Any], schema_name: str,
        start_worker: WorkerFactory) -> None:
    start_worker(tasks_dir, *FAST)
    start_worker(tasks_dir, *FAST)
    first = client.schedule_task("serial_queue", {"steps": 5, "seconds": 0.2})
    log = state_reaches(client, f"serial_queue:{first}")
    steps = log.data["steps"]
    assert [s["step"] for s in steps] == [0, 1, 2, 3, 4]
    for before, after in itertools.pairwise(steps):
        assert before["finished"] <= after["started"]
    all_final(db, schema_name)
    step_jobs = jobs(db, schema_name, "serial_queue")[1:]
    assert [j["queue"] for j in step_jobs] == ["serial_queue"] * 5
    assert [j["state"] for j in step_jobs] == ["done"] * 5
    assert [s["job_id"] for s in steps] == [j["id"] for j in step_jobs]


def test_standup_reminder_is_declared_periodic_and_mails_once_a_day(
        repo_root: Path, client: pgcc.Client, db: psycopg.Connection[Any], schema_name: str,
        start_worker: WorkerFactory) -> None:
    start_worker(repo_root / "tasks", *FAST)
    # Run by hand twice (as a redelivery would): the day's reminder is sent once.
    first = finished(client, client.schedule_task("standup_reminder",
                                                  {"to": "team@example.com"}))
    second = finished(client, client.schedule_task("standup_reminder",
                                                   {"to": "team@example.com"}))
    sent = [finished(client, job.result["email_job"]).result["sent"]
            for job in (first, second)]
    assert sent == [True, False]
    [reminder] = [entry for entry in json.loads(run_cli(
        "periodic", "--json", "--dsn", client.dsn, "--schema", schema_name).stdout)
        if entry["task"] == "standup_reminder"]
    assert (reminder["schedule"], reminder["timezone"], reminder["parameters"]) == \
        ("45 9 * * MON-FRI", "Europe/Berlin", {"to": "team@example.com"})
    upcoming = dt.datetime.fromisoformat(reminder["next_run"]).astimezone(
        zoneinfo.ZoneInfo("Europe/Berlin"))
    assert (upcoming.hour, upcoming.minute) == (9, 45) and upcoming.weekday() < 5


# --- the taskstate pattern ------------------------------------------------------------------


def test_taskstate_pattern_runs_the_body_once(tasks_dir: Path, client: pgcc.Client,
                                              start_worker: WorkerFactory) -> None:
    start_worker(tasks_dir, *FAST)
    job = finished(client, client.schedule_task("taskstate_pattern", {"state_id": "order-1"}))
    assert (job.state, job.result) == ("done", {"state": "complete", "charged": 100})
    state = client.taskstate.get("order-1")
    assert (state.status, state.error, state.tries_remaining) == ("complete", None, 3)
    assert client.taskstate.get("order-1.effect").data["times"] == 1

    # Delivered again later: nothing to do.
    job = finished(client, client.schedule_task("taskstate_pattern", {"state_id": "order-1"}))
    assert job.result == {"state": "complete", "skipped": "already finished"}
    assert client.taskstate.get("order-1.effect").data["times"] == 1


def test_taskstate_pattern_delivered_twice_at_once(tasks_dir: Path, client: pgcc.Client,
                                                   start_worker: WorkerFactory) -> None:
    start_worker(tasks_dir, *FAST)
    params = {"state_id": "order-2", "seconds": 1}
    twins = [client.schedule_task("taskstate_pattern", params) for _ in range(2)]
    results = [finished(client, job_id) for job_id in twins]
    assert [r.state for r in results] == ["done", "done"]
    outcomes = [r.result.get("skipped", "ran") for r in results]
    assert outcomes.count("ran") == 1, outcomes
    assert any(o in {f"job {twins[0]} owns it", f"job {twins[1]} owns it",
                     "another job started it first"} for o in outcomes), outcomes
    assert client.taskstate.get("order-2").status == "complete"
    assert client.taskstate.get("order-2.effect").data["times"] == 1


def test_taskstate_pattern_retries_until_tries_run_out(
        tasks_dir: Path, client: pgcc.Client, db: psycopg.Connection[Any], schema_name: str,
        start_worker: WorkerFactory) -> None:
    start_worker(tasks_dir, *FAST)
    # Fails once, then succeeds on its second attempt (it asked pgcc for a retry).
    recovering = client.schedule_task("taskstate_pattern", {"state_id": "order-3",
                                                            "fail_times": 1})
    # Fails every time: two tries, then failed.
    giving_up = client.schedule_task("taskstate_pattern", {"state_id": "order-4",
                                                           "fail_times": 9, "tries": 2})
    recovered = state_reaches(client, "order-3")
    assert recovered.tries_remaining == 2
    assert client.taskstate.get("order-3.effect").data["times"] == 1
    given_up = state_reaches(client, "order-4", "failed")
    assert given_up.tries_remaining == 0
    assert given_up.error == "RuntimeError: the payment service is down (failure 2)"
    all_final(db, schema_name)

    # One job each, run again by pgcc: no job scheduled by hand.
    assert [j["id"] for j in jobs(db, schema_name, "taskstate_pattern")] == \
        [recovering, giving_up]
    job = finished(client, recovering)
    assert (job.state, job.attempts, job.result) == \
        ("done", 2, {"state": "complete", "charged": 100})
    (asked,) = job.attempt_errors
    assert asked["error"].startswith(
        "the task asked for a retry after 500 ms: RuntimeError: the payment service is "
        "down (failure 1); 2 tries remain")
    job = finished(client, giving_up)
    assert (job.state, job.attempts) == ("failed", 2)
    assert "1 tries remain" in job.attempt_errors[0]["error"]
    assert job.error is not None and job.error.startswith(
        "RuntimeError: the payment service is down (failure 2)\n")
    assert client.taskstate.get("order-4.effect").status == "pending"  # never charged


@pytest.mark.parametrize("crash", ["before body", "after body"])
def test_taskstate_pattern_started_previously(crash: str, tasks_dir: Path, tmp_path: Path,
                                              client: pgcc.Client,
                                              start_worker: WorkerFactory) -> None:
    """A first attempt saves `started`, then crashes; the retry takes the pattern's
    "started previously" branch, and the body's effect happens exactly once."""
    # The pattern's own code, with a crash at one point of its first attempt.
    test_tasks = copy_tasks(tmp_path / "tasks", MISC_TASKS, "crashing_pattern")
    shutil.copy(tasks_dir / "taskstate_pattern.py", test_tasks / "_taskstate_pattern.py")
    start_worker(test_tasks, *FAST)
    job_id = client.schedule_task("crashing_pattern", {"state_id": "order-5", "crash": crash})
    job = finished(client, job_id)
    assert job.attempts == 2
    assert (job.state, job.result) == ("done", {"state": "complete", "charged": 100})
    assert len(job.attempt_errors) == 1, job.attempt_errors  # the crash, a no-response
    state = client.taskstate.get("order-5")
    assert state.status == "complete"
    assert state.data["redeliveries"] == 1  # the "started previously" branch ran
    assert state.data["job_id"] == job_id
    effect = client.taskstate.get("order-5.effect")
    assert effect.data["times"] == 1
    assert effect.data["job_id"] == job_id
