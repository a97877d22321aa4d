"""Each command loads only what it needs (issue 14): the CLI imports a
command's modules inside the command, so `pgcc schedule` loads neither the
worker nor the bench, and `pgcc worker` not the bench.

Each check runs a fresh interpreter, which writes the names of the modules it
loaded to a file as it exits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import pgcc

# Runs the `pgcc` console script's main() with the given arguments; at exit,
# writes sys.modules' names to the file named by $MODULES_OUT.
_RUN = """
import atexit, json, os, sys
atexit.register(lambda: open(os.environ["MODULES_OUT"], "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["pgcc", *json.loads(os.environ["PGCC_ARGS"])]
from pgcc.__main__ import main
main()
"""
_IMPORT_CLI = """
import json, os, sys
import pgcc._cli
open(os.environ["MODULES_OUT"], "w").write(json.dumps(sorted(sys.modules)))
"""

BENCH = ("pgcc._bench",)
WORKER = ("pgcc._worker", "pgcc._runner", "pgcc._forkserver", "pgcc._tasks", "pgcc._reaper",
           "pgcc._maintenance", "multiprocessing")
# `pgcc dashboard` alone loads its web stack (an optional extra).
DASHBOARD = ("pgcc._dashboard", "starlette", "uvicorn", "jinja2")


def _env(out: Path, args: list[str]) -> dict[str, str]:
    return {**os.environ, "MODULES_OUT": str(out), "PGCC_ARGS": json.dumps(args)}


def _loaded(out: Path) -> set[str]:
    return set(json.loads(out.read_text()))


def _among(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules for p in packages if m == p or m.startswith(p + "."))


def test_importing_the_cli_loads_no_command(tmp_path: Path) -> None:
    out = tmp_path / "modules.json"
    subprocess.run([sys.executable, "-c", _IMPORT_CLI], env=_env(out, []), check=True,
                   timeout=60)
    modules = _loaded(out)
    assert "pgcc._cli" in modules
    assert _among(modules, BENCH + WORKER + DASHBOARD + ("pgcc._client", "pgcc._status")) == []


@pytest.mark.parametrize("args", [["--help"], ["schedule", "--help"]])
def test_help_loads_neither_worker_nor_bench(tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "modules.json"
    result = subprocess.run([sys.executable, "-c", _RUN], env=_env(out, args),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
    assert _among(_loaded(out), BENCH + WORKER + DASHBOARD) == []


def test_schedule_loads_neither_worker_nor_bench(tmp_path: Path, pg_dsn: str,
                                                 schema_name: str) -> None:
    out = tmp_path / "modules.json"
    args = ["schedule", "noop", "{}", "--dsn", pg_dsn, "--schema", schema_name]
    result = subprocess.run([sys.executable, "-c", _RUN], env=_env(out, args),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().isdigit()
    modules = _loaded(out)
    assert "pgcc._client" in modules
    assert _among(modules, BENCH + WORKER + DASHBOARD) == []


# A task that tells which of these modules its child found loaded.
_PROBE_TASK = """import sys
def run(params):
    return sorted(m for m in ("pgcc._client", "psycopg_pool", "pgcc._bench") if m in sys.modules)
"""


def test_worker_loads_no_bench_and_leaves_the_client_to_its_children(
        tmp_path: Path, pg_dsn: str, schema_name: str, client: pgcc.Client,
        db: psycopg.Connection[Any]) -> None:
    """The worker process itself never schedules: the client (and psycopg_pool)
    is loaded in the forkserver, before the children are forked from it."""
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "loaded.py").write_text(_PROBE_TASK)
    job_id = client.schedule_task("loaded", {})
    finished = sql.SQL("SELECT result FROM {}.jobs WHERE id = %s AND finished_at IS NOT NULL"
                       ).format(sql.Identifier(schema_name))
    out = tmp_path / "modules.json"
    args = ["worker", "--dsn", pg_dsn, "--schema", schema_name, "--tasks", str(tasks),
            "--concurrency", "1", "--no-reaper"]
    log = tmp_path / "worker.log"
    with log.open("w") as err:
        process = subprocess.Popen([sys.executable, "-c", _RUN], env=_env(out, args),
                                   stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while (row := db.execute(finished, [job_id]).fetchone()) is None:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the job did not run"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 0, log.read_text()
    assert row[0] == ["pgcc._client", "psycopg_pool"]
    modules = _loaded(out)
    assert "pgcc._worker.supervisor" in modules
    assert _among(modules, (*BENCH, "pgcc._client", "psycopg_pool", "prometheus_client")) == []


def test_the_clis_copy_agrees_with_its_original() -> None:
    from pgcc import _cli as cli
    from pgcc._worker import config

    assert cli.DEFAULT_PREFETCH == config.DEFAULT_PREFETCH
