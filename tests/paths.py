"""Where things are, for every test: the repository, the test folders, the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
MIGRATIONS = REPO / "sql" / "migrations"
EXAMPLE_TASKS = REPO / "tasks"
# Task modules of the tests, one folder per kind of test (see tests/README.md).
SURVIVAL_TASKS = TESTS / "tasks" / "survival"
TEST_TASKS = TESTS / "tasks"
WORKER_TASKS = TEST_TASKS / "worker"
CTX_TASKS = TEST_TASKS / "ctx"
MISC_TASKS = TEST_TASKS / "misc"
OPTIONS_TASKS = TEST_TASKS / "options"
DASHBOARD_TASKS = TEST_TASKS / "dashboard"
RETRY_TASKS = TEST_TASKS / "retry"
PERIODIC_TASKS = TEST_TASKS / "periodic"
# The `pgcc` command of the Python running the tests (the venv's).
PGCC = str(Path(sys.executable).parent / "pgcc")


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`pgcc *args`, its output captured as text; the exit code is not checked."""
    return subprocess.run([PGCC, *args], capture_output=True, text=True, timeout=timeout,
                          check=False)
