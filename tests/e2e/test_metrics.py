"""`pgcc worker --metrics PORT` and `--log-format json` (issue 15), with real
worker processes and real PostgreSQL: what a user scrapes over HTTP, and the
log lines a log shipper parses."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

import pgcc
from tests.paths import PGCC
from tests.workers import (
    FAST,
    WorkerFactory,
    WorkerProcess,
    all_jobs_final,
    job_states,
    wait_for,
    write_task,
)

OK = '"""Returns {"ok": true}."""\n\ndef run(params):\n    return {"ok": True}\n'
FAILS = ('"""Raises, once: no retries."""\n\nmax_attempts = 1\n\n'
         'def run(params):\n    raise ValueError("no good")\n')
SLEEPS = ('"""Sleeps params["seconds"]."""\n\nimport time\n\n'
          'def run(params):\n    time.sleep(params["seconds"])\n')


pytestmark = pytest.mark.usefixtures("show_worker_logs")


def tasks(tmp_path: Path) -> Path:
    folder = tmp_path / "tasks"
    write_task(folder, "ok", OK)
    write_task(folder, "fails", FAILS)
    write_task(folder, "sleeps", SLEEPS)
    return folder


def metrics_url(worker: WorkerProcess) -> str:
    """The address the worker logged (it was given port 0: any free port)."""
    found = wait_for(lambda: re.search(r"metrics at (http://\S+/metrics)", worker.log()),
                     30, "the worker to log its metrics address")
    return found.group(1)


def scrape(url: str) -> dict[str, float]:
    """Every sample of the page, by its name and labels written as
    `name{label="value",...}` in the labels' order of name (as a user's query
    names them: the page itself may order them otherwise)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_the_metrics_count_this_workers_jobs_and_read_the_queues_from_the_database(
        tmp_path: Path, start_worker: WorkerFactory, client: pgcc.Client,
        db: psycopg.Connection[Any], schema_name: str) -> None:
    # Jobs of a task no worker runs: two due now, one for later.
    client.schedule_task("elsewhere", {})
    client.schedule_task("elsewhere", {})
    client.schedule_task("elsewhere", {}, after=3_600_000)
    worker = start_worker(tasks(tmp_path), *FAST, "--concurrency", "2", "--grace", "0",
                          "--metrics", "0")
    url = metrics_url(worker)
    for n in range(3):
        client.schedule_task("ok", {"n": n})
    for n in range(2):
        client.schedule_task("fails", {"n": n})
    wait_for(lambda: job_states(db, schema_name) == {"queued": 3, "done": 3, "failed": 2},
             60, "the jobs to finish")

    samples = scrape(url)
    assert samples['pgcc_jobs_finished_total{outcome="done",task="ok"}'] == 3.0
    assert samples['pgcc_jobs_finished_total{outcome="failed",task="fails"}'] == 2.0
    assert samples['pgcc_job_duration_seconds_count{task="ok"}'] == 3.0
    assert samples['pgcc_job_duration_seconds_bucket{le="+Inf",task="ok"}'] == 3.0
    assert samples['pgcc_job_duration_seconds_bucket{le="1.0",task="ok"}'] == 3.0
    assert 0 < samples['pgcc_job_duration_seconds_sum{task="ok"}'] < 3.0
    assert samples['pgcc_job_duration_seconds_count{task="fails"}'] == 2.0
    assert samples['pgcc_running_jobs{task="ok"}'] == 0.0
    assert samples['pgcc_running_jobs{task="sleeps"}'] == 0.0
    assert samples["pgcc_jobs_claimed_total"] == 5.0
    assert samples["pgcc_claim_round_trip_seconds_count"] >= 1
    assert samples['pgcc_claim_round_trip_seconds_bucket{le="+Inf"}'] \
        == samples["pgcc_claim_round_trip_seconds_count"]
    assert samples["pgcc_worker_concurrency"] == 2.0
    # From the database: the whole environment's queues, this worker's tasks or not.
    assert samples["pgcc_queue_metrics_up"] == 1.0
    assert samples['pgcc_queued_jobs{task="elsewhere"}'] == 2.0
    assert samples['pgcc_scheduled_jobs{task="elsewhere"}'] == 1.0
    assert samples['pgcc_oldest_queued_age_seconds{task="elsewhere"}'] > 0
    assert 'pgcc_queued_jobs{task="ok"}' not in samples  # nothing of it waits
    assert "process_resident_memory_bytes" in samples

    # A running job shows, and the database's numbers follow it (read at most
    # once a second).
    client.schedule_task("sleeps", {"seconds": 30})
    wait_for(lambda: scrape(url)['pgcc_running_jobs{task="sleeps"}'] == 1.0, 30,
             "the sleeping job to show as running")
    client.schedule_task("elsewhere", {})
    wait_for(lambda: scrape(url)['pgcc_queued_jobs{task="elsewhere"}'] == 3.0, 10,
             "the new job to show in the queue depth")
    with urllib.request.urlopen(url.replace("/metrics", "/"), timeout=10) as response:
        assert b"pgcc_jobs_finished_total" in response.read()
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(url.replace("/metrics", "/nothing"), timeout=10)
    assert missing.value.code == 404


def test_a_port_in_use_stops_the_worker_with_one_line(
        tmp_path: Path, pg_dsn: str, schema_name: str, db: psycopg.Connection[Any]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [PGCC, "worker", "--dsn", pg_dsn, "--schema", schema_name,
             "--tasks", str(tasks(tmp_path)), "--metrics", str(port)],
            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (f"pgcc: --metrics {port}: cannot listen on "
                                     f"127.0.0.1:{port} (Address already in use)")
    # Refused before anything was written: no worker registered.
    assert db.execute(f'SELECT count(*) FROM "{schema_name}".workers').fetchone() == (0,)


def test_the_metrics_host_is_checked_too(tmp_path: Path, pg_dsn: str, schema_name: str
                                         ) -> None:
    result = subprocess.run(
        [PGCC, "worker", "--dsn", pg_dsn, "--schema", schema_name,
         "--tasks", str(tasks(tmp_path)), "--metrics", "0", "--metrics-host", "192.0.2.1"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert re.fullmatch(r"pgcc: --metrics 0: cannot listen on 192\.0\.2\.1:0 \(.+\)\n",
                        result.stderr)


def test_json_logs_carry_each_jobs_fields_and_never_its_parameters(
        tmp_path: Path, start_worker: WorkerFactory, client: pgcc.Client,
        db: psycopg.Connection[Any], schema_name: str) -> None:
    worker = start_worker(tasks(tmp_path), *FAST, "--concurrency", "1",
                          "--log-format", "json")
    done = client.schedule_task("ok", {"password": "hunter2"})
    failed = client.schedule_task("fails", {"password": "hunter2"})
    wait_for(lambda: all_jobs_final(db, schema_name), 60, "the jobs to finish")
    assert worker.stop() == 0
    log = worker.log()
    assert "hunter2" not in log
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    ended = {line["job_id"]: line for line in lines if "outcome" in line}
    assert ended[done]["outcome"] == "done"
    assert ended[done]["level"] == "info"
    assert ended[failed]["outcome"] == "failed"
    assert ended[failed]["level"] == "warning"
    assert "no good" in ended[failed]["message"]
    for job_id, task in ((done, "ok"), (failed, "fails")):
        assert ended[job_id]["task"] == task
        assert ended[job_id]["attempt"] == 1
        assert isinstance(ended[job_id]["duration"], float)
        assert 0 <= ended[job_id]["duration"] < 10
        assert ended[job_id]["logger"] == "pgcc.worker"
    started = [line for line in lines if line.get("job_id") == done and "outcome" not in line]
    assert started and started[0]["message"] == f"job {done} (ok, attempt 1) started"
    assert any(line["message"].startswith("worker ") and line["message"].endswith(" stopped")
               for line in lines)


def test_json_logs_are_asked_for_by_environment_too(
        pg_dsn: str, schema_name: str, client: pgcc.Client) -> None:
    """PGCC_LOG_FORMAT reaches the commands without the option; a wrong value is
    one line, exit 2."""
    env = {**os.environ, "PGCC_LOG_FORMAT": "yaml"}
    status = [PGCC, "status", "--dsn", pg_dsn, "--schema", schema_name]
    result = subprocess.run(status, capture_output=True, text=True, timeout=60, check=False,
                            env=env)
    assert result.returncode == 2
    assert result.stderr == "pgcc: PGCC_LOG_FORMAT: must be text or json\n"
    env["PGCC_LOG_FORMAT"] = "json"
    result = subprocess.run([*status, "-v"], capture_output=True, text=True, timeout=60,
                            check=False, env=env)
    assert result.returncode == 0, result.stderr
    for line in result.stderr.splitlines():
        assert set(json.loads(line)) >= {"time", "level", "logger", "message"}
