"""The dashboard in a real browser: headless Chromium (Debian's `chromium`,
driven by Playwright) against a real `pgcc dashboard` process and a real
worker, checking what a person would check."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgcc
from tests.helpers import q
from tests.paths import DASHBOARD_TASKS, PGCC
from tests.workers import FAST, WorkerFactory, copy_tasks, finished, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; "
                ".ci/run installs it)", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

TOKEN = "browser-test-token-0123456789"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Dashboard:
    def __init__(self, dsn: str, schema: str, log: Path, *args: str,
                 env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.log_path = log
        self.process = subprocess.Popen(
            [PGCC, "dashboard", "--dsn", dsn, "--schema", schema, "--port", str(self.port),
             *args], stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})})

        def answers() -> bool:
            assert self.process.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(self.url + "/login", timeout=1):
                    return True
            except (urllib.error.URLError, OSError):
                return False
        wait_for(answers, 30, "the dashboard to answer")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture
def dashboard(pg_dsn: str, schema_name: str, tmp_path: Path) -> Iterator[Dashboard]:
    # Beyond loopback, which needs the token: given here through the environment.
    server = Dashboard(pg_dsn, schema_name, tmp_path / "dashboard.log", "--host", "0.0.0.0",
                       env={"PGCC_DASHBOARD_TOKEN": TOKEN})
    yield server
    server.stop()


def test_without_the_token_nothing_is_shown(dashboard: Dashboard, client: pgcc.Client
                                           ) -> None:
    client.schedule_task("secret_task", {"password": "hunter2"})
    for path in ("/", "/jobs", "/jobs/1"):
        request = urllib.request.Request(dashboard.url + path)
        with urllib.request.urlopen(request, timeout=5) as response:
            # Redirected to the login form, which shows no job.
            assert response.url.startswith(dashboard.url + "/login")
            body = response.read().decode()
        assert "secret_task" not in body and "hunter2" not in body
    bearer = urllib.request.Request(dashboard.url + "/jobs",
                                    headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(bearer, timeout=5) as response:
        assert "secret_task" in response.read().decode()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # --no-sandbox: the tests may run as root, where Chromium's sandbox refuses.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, dashboard: Dashboard) -> Iterator[Page]:
    context = browser.new_context(java_script_enabled=False)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    # The token, through the login form, as a person would.
    tab.goto(dashboard.url + "/")
    expect(tab).to_have_url(re.compile(r"/login"))
    tab.fill("input[name=token]", TOKEN)
    tab.click("button:has-text('Log in')")
    expect(tab.locator("h1")).to_have_text("Overview")
    yield tab
    context.close()


def test_the_pages_show_the_jobs_escaped(
        page: Page, dashboard: Dashboard, client: pgcc.Client) -> None:
    job_id = client.schedule_task("nobody_runs_this", {"note": "<script>alert(1)</script>"},
                                  queue="reports")
    page.goto(dashboard.url + "/")
    expect(page.locator(".card", has_text="queued")).to_contain_text("1")
    expect(page.locator("table", has_text="reports")).to_contain_text(f"#{job_id}")
    page.click("header >> text=Jobs")
    page.select_option("select[name=state]", "queued")
    page.fill("input[name=task]", "nobody_runs_this")
    page.click("button:has-text('Filter')")
    page.click(f"text=#{job_id}")
    expect(page.locator("h1")).to_contain_text(f"Job #{job_id}")
    # The parameters are shown as text, never run as a script.
    expect(page.locator("#parameters")).to_contain_text('"note": "<script>alert(1)</script>"')
    assert page.locator("main script").count() == 0
    page.screenshot(path=str(Path(dashboard.log_path).with_name("job.png")), full_page=True)


def test_retry_button_runs_a_failed_job_again(
        page: Page, dashboard: Dashboard, client: pgcc.Client,
        start_worker: WorkerFactory, tmp_path: Path) -> None:
    start_worker(copy_tasks(tmp_path / "tasks", DASHBOARD_TASKS, "fail_once"), *FAST)
    job_id = client.schedule_task("fail_once", {"marker": str(tmp_path / "ran-once")})
    job = finished(client, job_id)
    assert job.state == "failed"
    page.goto(f"{dashboard.url}/jobs/{job_id}")
    expect(page.locator("#error")).to_contain_text("first run fails on purpose")
    page.click("button:has-text('Retry')")
    expect(page.locator("[role=status]")).to_contain_text("will run again")
    job = finished(client, job_id)
    assert job.state == "done" and job.result == {"second_run": "ok"}
    page.reload()
    expect(page.locator("h1")).to_contain_text("done")
    expect(page.locator("#result")).to_contain_text('"second_run": "ok"')
    # The failed first run is kept in the job's history.
    expect(page.locator("#history")).to_contain_text("first run fails on purpose")


def test_cancel_button_stops_a_running_job(
        page: Page, dashboard: Dashboard, client: pgcc.Client,
        start_worker: WorkerFactory, tmp_path: Path) -> None:
    start_worker(copy_tasks(tmp_path / "tasks", DASHBOARD_TASKS, "sleepy"), *FAST)
    job_id = client.schedule_task("sleepy", {"seconds": 120})

    def running() -> bool:
        job = client.get_job(job_id)
        return job is not None and job.state == "running"
    wait_for(running, 30, "the job to run")
    page.goto(dashboard.url + "/")
    expect(page.locator("table", has_text="Running for")).to_contain_text(f"#{job_id}")
    page.goto(f"{dashboard.url}/jobs/{job_id}")
    expect(page.locator("h1")).to_contain_text("running")
    started = time.monotonic()
    page.click("button:has-text('Cancel')")
    expect(page.locator("[role=status]")).to_contain_text("cancel")
    job = finished(client, job_id, timeout=15)
    assert job.state == "cancelled", job
    assert time.monotonic() - started < 10
    page.reload()
    expect(page.locator("h1")).to_contain_text("cancelled")


def test_the_overview_lists_periodic_tasks_with_their_last_job(
        page: Page, dashboard: Dashboard, client: pgcc.Client, db: psycopg.Connection[Any],
        schema_name: str) -> None:
    job_id = client.schedule_task("nightly", {})
    db.execute(q(schema_name, """
        INSERT INTO {}.periodic (task, schedule, timezone, last_tick, last_job_id)
        VALUES ('nightly', '30 2 * * *', 'Europe/Berlin', '2026-03-29T01:00:00Z', %s)"""),
               [job_id])
    page.goto(dashboard.url + "/")
    table = page.locator("table", has_text="Next run")
    expect(table).to_contain_text("nightly")
    expect(table).to_contain_text("Europe/Berlin")
    expect(table).to_contain_text("2026-03-29 01:00:00 UTC")
    table.locator(f"text=#{job_id}").click()
    expect(page.locator("h1")).to_contain_text(f"Job #{job_id}")
