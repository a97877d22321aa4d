"""pgcc's public face: what `__all__` promises is there, typed, and the
example tasks use nothing else. (No database: these read the package and run mypy.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pgcc
from tests.paths import EXAMPLE_TASKS, REPO

USER_SCRIPT = '''
from __future__ import annotations

from typing import Any

import pgcc


def enqueue() -> int:
    with pgcc.Client() as client:
        job_id = client.schedule_task("othertask", {"myvalue": 42}, after=2000, queue="q")
        job = client.get_job(job_id)
        if job is not None and job.state is pgcc.JobState.DONE:
            print(job.result)
        return job_id


def run(params: dict[str, Any], ctx: pgcc.JobContext) -> dict[str, Any]:
    state: pgcc.TaskState = ctx.taskstate.get(f"signup:{params['user']}")
    if state.status is pgcc.TaskStatus.COMPLETE:
        return {"skipped": True}
    ctx.schedule_task("send_email", {"to": params["user"]})
    return {"attempt": ctx.attempt}
'''


def test_every_public_name_is_there_and_nothing_else_is_advertised() -> None:
    for name in pgcc.__all__:
        assert getattr(pgcc, name) is not None, name
    assert sorted(pgcc.__all__) == pgcc.__all__
    assert {"Client", "AsyncClient", "Job", "JobContext", "AsyncJobContext", "TaskState",
            "JobState", "PgccError", "ScheduleError"} <= set(pgcc.__all__)


def test_every_module_but_the_public_ones_is_visibly_internal() -> None:
    public = {"__init__", "__main__", "errors"}
    for path in (REPO / "pgcc").iterdir():
        if path.name == "py.typed" or path.name == "__pycache__":
            continue
        name = path.stem
        assert name in public or name.startswith("_"), path


def test_the_example_tasks_import_only_public_names() -> None:
    for path in sorted(EXAMPLE_TASKS.glob("*.py")):
        assert not re.search(r"\bpgcc\._|from pgcc import _", path.read_text()), path


def _mypy(script: Path) -> subprocess.CompletedProcess[str]:
    # From the source tree: mypy cannot follow an editable install's import hook.
    # (A wheel ships pgcc/py.typed, checked below.)
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                           str(script)], capture_output=True, text=True, timeout=300,
                          cwd=script.parent, env={**os.environ, "MYPYPATH": str(REPO)},
                          check=False)


def test_the_wheel_marks_pgcc_as_typed() -> None:
    assert (REPO / "pgcc" / "py.typed").is_file()
    assert '"pgcc" = ["py.typed"]' in (REPO / "pyproject.toml").read_text()


def test_a_users_script_type_checks_with_pgccs_own_types(tmp_path: Path) -> None:
    good = tmp_path / "good.py"
    good.write_text(USER_SCRIPT)
    result = _mypy(good)
    assert result.returncode == 0, result.stdout
    # The types are pgcc's own, not Any: a wrong use is caught.
    bad = tmp_path / "bad.py"
    bad.write_text(USER_SCRIPT + "\n\ndef wrong(c: pgcc.Client) -> str:\n"
                   "    return c.schedule_task('t', {})\n")
    result = _mypy(bad)
    assert result.returncode == 1
    assert 'Incompatible return value type (got "int", expected "str")' in result.stdout
