"""Where tasks come from: `--tasks` takes a folder or an importable package,
and modules whose names start with `_` are helpers the tasks import, not
tasks. Real workers; task code never runs in the worker's own process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg

import pgcc
from tests import workers
from tests.helpers import q
from tests.paths import run_cli
from tests.workers import WorkerFactory, finished, wait_for, write_task

FAST = (*workers.FAST, "--concurrency", "2")

# Each import of a module of the tasks' package notes the pid that ran it.
NOTE_PID = ("import os as _os, pathlib as _pl\n"
            "with open(_pl.Path(__file__).parent.parent / 'imported-by', 'a') as _f:\n"
            "    _f.write(f'{_os.getpid()}\\n')\n")


def served_tasks(db: psycopg.Connection[Any], schema: str) -> list[str]:
    def check() -> list[str] | None:
        row = db.execute(q(schema, "SELECT tasks FROM {}.workers")).fetchone()
        return list(row[0]) if row else None
    return wait_for(check, what="the worker's row")


def test_a_folder_helper_is_imported_by_tasks_not_run_as_one(
        tmp_path: Path, client: pgcc.Client, db: psycopg.Connection[Any], schema_name: str,
        start_worker: WorkerFactory) -> None:
    folder = tmp_path / "tasks"
    write_task(folder, "_shared", "GREETING = 'hello from _shared'\n"
               "raise_if_run_as_task = None\n")
    write_task(folder, "relative", "from . import _shared\n\n"
               "def run(params):\n    return _shared.GREETING\n")
    write_task(folder, "absolute", "import _shared\n\n"
               "def run(params):\n    return _shared.GREETING + '!'\n")
    start_worker(folder, *FAST)
    assert served_tasks(db, schema_name) == ["absolute", "relative"]
    relative = finished(client, client.schedule_task("relative"))
    absolute = finished(client, client.schedule_task("absolute"))
    assert (relative.state, relative.result) == ("done", "hello from _shared")
    assert (absolute.state, absolute.result) == ("done", "hello from _shared!")


def test_a_package_on_the_python_path(tmp_path: Path, client: pgcc.Client,
                                      db: psycopg.Connection[Any], schema_name: str,
                                      start_worker: WorkerFactory) -> None:
    root = tmp_path / "src"
    package = root / "myapp" / "tasks"
    write_task(root / "myapp", "__init__", "")
    write_task(package, "__init__", NOTE_PID)
    write_task(package, "_shared", "def greet(name):\n    return f'hello {name}'\n")
    write_task(package, "greet", "from ._shared import greet\n\n"
               "def run(params):\n    return greet(params['name'])\n")
    write_task(package, "shout", "from myapp.tasks import _shared\n\n"
               "async def run(params):\n    return _shared.greet(params['name']).upper()\n")
    python_path = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", ""),
                                   str(Path(__file__).resolve().parents[2])])
    worker = start_worker(Path("myapp.tasks"), *FAST, env={"PYTHONPATH": python_path})
    assert served_tasks(db, schema_name) == ["greet", "shout"]
    greet = finished(client, client.schedule_task("greet", {"name": "ada"}))
    shout = finished(client, client.schedule_task("shout", {"name": "ada"}))
    assert (greet.state, greet.result) == ("done", "hello ada")
    assert (shout.state, shout.result) == ("done", "HELLO ADA")
    # The package was imported in children only, never in the worker itself.
    pids = {int(line) for line in (root / "myapp" / "imported-by").read_text().split()}
    assert pids and worker.pid not in pids


def test_a_tasks_value_that_is_neither_folder_nor_package_is_refused(
        tmp_path: Path, pg_dsn: str, schema_name: str) -> None:
    result = run_cli("worker", "--dsn", pg_dsn, "--schema", schema_name,
                     "--tasks", str(tmp_path / "no" / "such"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"pgcc: --tasks {tmp_path / 'no' / 'such'}: neither a folder nor a package found on "
        "the current folder or the Python path (PYTHONPATH)"]
    result = run_cli("worker", "--dsn", pg_dsn, "--schema", schema_name,
                     "--tasks", "no_such_app.tasks")
    assert result.returncode == 2
    assert "--tasks no_such_app.tasks: neither a folder nor a package" in result.stderr
