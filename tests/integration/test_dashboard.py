"""The dashboard's pages and forms through Starlette's TestClient, on a real
PostgreSQL: what a person sees and what the forms refuse."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool
from starlette.testclient import TestClient

import pgcc
from pgcc._dashboard.app import Settings, create_app
from pgcc._dashboard.server import check_binding
from pgcc._database import Link
from pgcc._maintenance.leadership import Leadership
from tests.helpers import grant, q
from tests.paths import run_cli

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def pool(pg_dsn: str) -> Iterator[ConnectionPool[Any]]:
    with ConnectionPool(pg_dsn, min_size=1, max_size=2, kwargs={"autocommit": True}) as p:
        yield p


def browser(pool: ConnectionPool[Any], schema: str, token: str | None = None,
            page_size: int = 50) -> TestClient:
    app = create_app(pool, Settings(schema=schema, token=token, page_size=page_size))
    return TestClient(app, base_url="http://127.0.0.1:8080", follow_redirects=False)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def set_state(db: psycopg.Connection[Any], schema: str, job_id: int, state: str,
              error: str | None = None) -> None:
    db.execute(q(schema, "UPDATE {}.jobs SET state = %s, error = %s, attempts = 1, "
                 "finished_at = now(), started_at = now() WHERE id = %s"),
               [state, error, job_id])


def job_ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<a href="/jobs/(\d+)">#', html)]


def test_overview_shows_counts_running_jobs_queues_and_workers(
        client: pgcc.Client, db: psycopg.Connection[Any], schema_name: str,
        pool: ConnectionPool[Any]) -> None:
    head = client.schedule_task("report", {}, queue="billing")
    client.schedule_task("report", {}, queue="billing")
    worker = db.execute(q(schema_name, "INSERT INTO {}.workers (hostname, pid, tasks, "
                          "concurrency, lease) VALUES ('box-1', 4242, '{{report,mail}}', 2, "
                          "'30 s') RETURNING id")).fetchone()
    assert worker is not None
    running = client.schedule_task("mail", {})
    db.execute(q(schema_name, "UPDATE {}.jobs SET state = 'running', worker_id = %s, "
                 "attempts = 1, started_at = now() - interval '95 s' WHERE id = %s"),
               [worker[0], running])
    failed = client.schedule_task("mail", {})
    set_state(db, schema_name, failed, "failed", "boom")

    page = browser(pool, schema_name).get("/")
    assert page.status_code == 200
    text = re.sub(r"\s+", " ", page.text)
    assert re.search(r"queued</span><b>2</b>", text)
    assert re.search(r"running</span><b>1</b>", text)
    assert re.search(r"failed</span><b>1</b>", text)
    # The running job, for how long it has run; the queue with its head; the worker.
    assert f'href="/jobs/{running}">#{running}' in text and "1m 3" in text
    assert "billing" in text and f'href="/jobs/{head}">#{head}' in text
    assert "box-1" in text and "report, mail" in text


def test_job_list_filters_by_state_task_and_queue(
        client: pgcc.Client, db: psycopg.Connection[Any], schema_name: str,
        pool: ConnectionPool[Any]) -> None:
    a = client.schedule_task("alpha", {})
    b = client.schedule_task("beta", {}, queue="q1")
    c = client.schedule_task("beta", {})
    set_state(db, schema_name, c, "failed", "boom")
    web = browser(pool, schema_name)
    assert job_ids(web.get("/jobs").text) == [c, b, a]
    assert job_ids(web.get("/jobs", params={"task": "beta"}).text) == [c, b]
    assert job_ids(web.get("/jobs", params={"state": "failed"}).text) == [c]
    assert job_ids(web.get("/jobs", params={"queue": "q1"}).text) == [b]
    assert job_ids(web.get("/jobs", params={"task": "beta", "state": "queued"}).text) == [b]
    assert "No job matches" in web.get("/jobs", params={"task": "gamma"}).text
    bad = web.get("/jobs", params={"state": "exploded"})
    assert bad.status_code == 400 and "state: one of queued" in bad.text
    assert web.get("/jobs", params={"before": "x"}).status_code == 400


def test_job_list_pages_by_id_without_gaps_or_repeats(
        client: pgcc.Client, schema_name: str, pool: ConnectionPool[Any]) -> None:
    ids = [client.schedule_task("alpha", {"n": n}) for n in range(23)]
    client.schedule_task("other", {})
    web = browser(pool, schema_name, page_size=10)
    seen: list[int] = []
    pages = []
    url: str | None = "/jobs?task=alpha"
    while url is not None:
        html = web.get(url).text
        pages.append(job_ids(html))
        seen += pages[-1]
        match = re.search(r'href="([^"]+)" rel="next"', html)
        url = match.group(1).replace("&amp;", "&") if match else None
    assert [len(p) for p in pages] == [10, 10, 3]
    assert seen == sorted(ids, reverse=True)
    # Back from the last page: the "newer" link shows the page before it.
    last = web.get(f"/jobs?task=alpha&before={pages[1][-1]}").text
    newer = re.search(r'href="([^"]+)" rel="prev"', last)
    assert newer is not None
    assert job_ids(web.get(newer.group(1).replace("&amp;", "&")).text) == pages[1]


def test_job_detail_shows_everything_escaped(
        client: pgcc.Client, db: psycopg.Connection[Any], schema_name: str,
        pool: ConnectionPool[Any]) -> None:
    job_id = client.schedule_task("evil", {"html": "<script>alert('x')</script>"},
                                  queue="<b>q</b>")
    set_state(db, schema_name, job_id, "failed", "ValueError: <img src=x onerror=alert(1)>")
    db.execute(q(schema_name, "UPDATE {}.jobs SET result = %s WHERE id = %s"),
               ['{"out": "<script>r</script>"}', job_id])
    page = browser(pool, schema_name).get(f"/jobs/{job_id}")
    assert page.status_code == 200
    assert "<script>" not in page.text and "<img" not in page.text and "<b>q" not in page.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert "&lt;b&gt;q&lt;/b&gt;" in page.text
    assert "failed" in page.text and "Attempts" in page.text
    listed = browser(pool, schema_name).get("/jobs")
    assert "<b>q</b>" not in listed.text
    assert browser(pool, schema_name).get("/jobs/999999").status_code == 404


def test_job_detail_shows_its_steps_escaped(
        client: pgcc.Client, db: psycopg.Connection[Any], schema_name: str,
        pool: ConnectionPool[Any]) -> None:
    job_id = client.schedule_task("charge")
    set_state(db, schema_name, job_id, "done")
    db.execute(q(schema_name, "INSERT INTO {}.steps (job_id, name, value, attempt, token)"
                              " VALUES (%s, '<i>charge</i>', %s, 2, 7)"),
               [job_id, '{"id": "<b>ch_1</b>"}'])
    page = browser(pool, schema_name).get(f"/jobs/{job_id}")
    assert page.status_code == 200
    assert '<table id="steps">' in page.text and "<i>" not in page.text
    assert "&lt;i&gt;charge&lt;/i&gt;</td><td>2</td>" in page.text
    assert "&lt;b&gt;ch_1&lt;/b&gt;" in page.text
    other = client.schedule_task("plain")
    assert 'id="steps"' not in browser(pool, schema_name).get(f"/jobs/{other}").text


def test_cancel_button_cancels_a_queued_job(
        client: pgcc.Client, schema_name: str, pool: ConnectionPool[Any]) -> None:
    job_id = client.schedule_task("alpha", {})
    web = browser(pool, schema_name)
    csrf = csrf_of(web.get(f"/jobs/{job_id}").text)
    response = web.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf},
                        headers={"Origin": "http://127.0.0.1:8080"})
    assert response.status_code == 303
    job = client.get_job(job_id)
    assert job is not None and job.state == "cancelled"
    assert "was cancelled" in web.get(response.headers["location"]).text
    # Again: refused, and the page says why.
    again = web.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf})
    assert "not cancelled" in web.get(again.headers["location"]).text


def test_forms_refuse_cross_site_requests(
        client: pgcc.Client, schema_name: str, pool: ConnectionPool[Any]) -> None:
    job_id = client.schedule_task("alpha", {})
    web = browser(pool, schema_name)
    csrf = csrf_of(web.get(f"/jobs/{job_id}").text)
    # No token, a wrong token, another session's token, another site's Origin.
    assert web.post(f"/jobs/{job_id}/cancel", data={}).status_code == 403
    assert web.post(f"/jobs/{job_id}/cancel", data={"csrf": "0" * 64}).status_code == 403
    other = browser(pool, schema_name)
    other.get("/")
    assert other.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf}).status_code == 403
    cross = web.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf},
                     headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403 and "another site" in cross.text
    job = client.get_job(job_id)
    assert job is not None and job.state == "queued"


def test_token_is_needed_for_every_page_and_form(
        client: pgcc.Client, schema_name: str, pool: ConnectionPool[Any]) -> None:
    job_id = client.schedule_task("alpha", {})
    web = browser(pool, schema_name, token=TOKEN)
    for path in ("/", "/jobs", f"/jobs/{job_id}"):
        response = web.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith(
            "/login")
    assert web.post(f"/jobs/{job_id}/cancel", data={}).status_code == 401
    # The header works; a wrong one does not.
    assert web.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert web.get("/", headers={"Authorization": "Bearer nope"}).status_code == 303
    # The login form: a wrong token is refused, the right one sets the cookie.
    csrf = csrf_of(web.get("/login").text)
    assert web.post("/login", data={"csrf": csrf, "token": "wrong"}).status_code == 401
    assert web.get("/").status_code == 303
    logged = web.post("/login?next=/jobs", data={"csrf": csrf, "token": TOKEN})
    assert logged.status_code == 303 and logged.headers["location"] == "/jobs"
    assert web.get("/jobs").status_code == 200
    job = client.get_job(job_id)
    assert job is not None and job.state == "queued"


def test_binding_beyond_loopback_needs_a_token() -> None:
    check_binding("127.0.0.1", None)
    check_binding("::1", None)
    check_binding("localhost", None)
    with pytest.raises(ValueError, match="needs --token"):
        check_binding("0.0.0.0", None)
    with pytest.raises(ValueError, match="needs --token"):
        check_binding("192.168.1.10", None)
    with pytest.raises(ValueError, match="too short"):
        check_binding("0.0.0.0", "short")
    check_binding("0.0.0.0", TOKEN)


def test_retry_button_puts_a_failed_job_back_in_its_queue(
        client: pgcc.Client, db: psycopg.Connection[Any], schema_name: str,
        pool: ConnectionPool[Any]) -> None:
    job_id = client.schedule_task("alpha", {})
    set_state(db, schema_name, job_id, "failed", "boom")
    web = browser(pool, schema_name)
    csrf = csrf_of(web.get(f"/jobs/{job_id}").text)
    response = web.post(f"/jobs/{job_id}/retry", data={"csrf": csrf})
    assert response.status_code == 303
    job = client.get_job(job_id)
    assert job is not None and job.state == "queued"
    assert "will run again" in web.get(response.headers["location"]).text
    # A queued job is not retried; the page says so.
    again = web.post(f"/jobs/{job_id}/retry", data={"csrf": csrf})
    assert "not retried" in web.get(again.headers["location"]).text


def test_a_read_only_role_sees_the_pages_and_its_buttons_are_refused(
        client: pgcc.Client, pg_dsn: str, schema_name: str,
        login_role: Callable[[], tuple[str, str]]) -> None:
    job_id = client.schedule_task("alpha", {"x": 1})
    role, dsn = login_role()
    grant(pg_dsn, schema_name, "read", role)
    with ConnectionPool(dsn, min_size=1, max_size=1, kwargs={"autocommit": True}) as reader:
        web = browser(reader, schema_name)
        assert web.get("/").status_code == 200
        page = web.get(f"/jobs/{job_id}")
        assert page.status_code == 200 and "alpha" in page.text
        refused = web.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf_of(page.text)})
        assert refused.status_code == 403 and "may not call cancel_job" in refused.text
    job = client.get_job(job_id)
    assert job is not None and job.state == "queued"


def test_the_command_refuses_what_cannot_work(pg_dsn: str, schema_name: str) -> None:
    wide = run_cli("dashboard", "--host", "0.0.0.0", "--dsn", pg_dsn, "--schema", schema_name,
                   timeout=30)
    assert wide.returncode == 2
    assert wide.stderr.strip().splitlines() == [
        "pgcc: --host 0.0.0.0: not a loopback address; serving beyond this machine needs "
        "--token (or PGCC_DASHBOARD_TOKEN)"]
    bare = run_cli("dashboard", "--dsn", pg_dsn, "--schema", "not_migrated_here", timeout=30)
    assert bare.returncode == 3
    assert "schema not_migrated_here has no pgcc tables: run `pgcc migrate`" in bare.stderr


def test_without_the_extra_the_command_says_what_to_install() -> None:
    # The extra's modules made unimportable, as in an install without it.
    script = ("import sys; sys.modules['uvicorn'] = None; sys.argv = ['pgcc', 'dashboard'];"
              "from pgcc._cli import main; main()")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'pgcc[dashboard]'" in lines[0], result.stderr


# ---- periodic tasks -----------------------------------------------------------------


def test_overview_shows_periodic_tasks(client: pgcc.Client, db: psycopg.Connection[Any],
                                       schema_name: str, pool: ConnectionPool[Any]) -> None:
    assert "Periodic tasks" not in browser(pool, schema_name).get("/").text
    job = client.schedule_task("nightly", {})
    db.execute(q(schema_name, """
        INSERT INTO {}.periodic (task, schedule, timezone, last_tick, last_job_id, due_after)
        VALUES ('nightly', '30 2 * * *', 'Europe/Berlin', '2026-03-29T01:00:00Z', %s,
                now() - interval '2 days'),
               ('<b>old</b>', '* * * * *', 'UTC', NULL, NULL, now())"""), [job])
    db.execute(q(schema_name, "UPDATE {}.periodic SET active = false WHERE task <> 'nightly'"))
    text = re.sub(r"\s+", " ", browser(pool, schema_name).get("/").text)
    assert "<h2>Periodic tasks</h2>" in text
    # Not run for two days: its most recent tick is overdue (no worker runs it).
    assert re.search(r'href="/jobs\?task=nightly">nightly</a></td> <td><code>30 2 \* \* \*'
                     r"</code></td><td>Europe/Berlin</td> <td>\d{4}-\d\d-\d\d 0[01]:30:00 UTC "
                     r'<span class="state state-failed">overdue</span></td> '
                     r"<td>2026-03-29 01:00:00 UTC</td> "
                     rf'<td><a href="/jobs/{job}">#{job}</a> <span class="state state-queued">'
                     r"queued</span>", text), text
    assert "&lt;b&gt;old&lt;/b&gt;" in text and '<span class="muted">inactive</span>' in text


def test_overview_names_the_maintenance_leader_or_its_absence(
        pg_dsn: str, schema_name: str, pool: ConnectionPool[Any]) -> None:
    def overview() -> str:
        return re.sub(r"\s+", " ", browser(pool, schema_name).get("/").text)

    assert "No maintenance leader:" in overview()
    link = Link(pg_dsn)
    try:
        leadership = Leadership(schema_name, 60.0)
        assert leadership.hold(link)
        text = overview()
        assert f"led by <code>{leadership.name}</code>" in text
        assert "No maintenance leader" not in text
        leadership.resign(link)
        assert "No maintenance leader:" in overview()
    finally:
        link.close()
