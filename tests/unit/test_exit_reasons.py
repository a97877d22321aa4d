"""What a job's error says when its child ended without answering
(pgcc/worker/pool.py `exit_reason`): the text an operator reads in attempt_errors."""

from __future__ import annotations

import signal

import pytest

from pgcc import _runner as runner
from pgcc._worker.pool import exit_reason


@pytest.mark.parametrize(("code", "says"), [
    (1, "the child process exited with code 1 before answering"),
    (0, "the child process exited with code 0 before answering"),
    (-signal.SIGKILL, "the child process was killed by SIGKILL"),
    (-signal.SIGSEGV, "the child process was killed by SIGSEGV"),
    (-signal.SIGTERM, "the child process was killed by SIGTERM"),
    (-200, "the child process was killed by signal 200"),
    (None, "the child process exited with code None before answering"),
])
def test_an_exit_is_told_by_its_code_or_signal(code: int | None, says: str) -> None:
    assert exit_reason(code) == says


def test_running_out_of_memory_and_a_lapsed_lease_have_codes_of_their_own() -> None:
    assert "out of memory" in exit_reason(runner.OUT_OF_MEMORY_EXIT)
    assert "lease had lapsed" in exit_reason(runner.LEASE_LAPSED_EXIT)
    assert runner.OUT_OF_MEMORY_EXIT != runner.LEASE_LAPSED_EXIT
    assert {runner.OUT_OF_MEMORY_EXIT, runner.LEASE_LAPSED_EXIT}.isdisjoint({0, 1})


def test_a_job_lost_during_a_step_has_a_code_of_its_own() -> None:
    assert "pgcc.JobLost" in exit_reason(runner.JOB_LOST_EXIT)
    assert runner.JOB_LOST_EXIT not in {0, 1, runner.OUT_OF_MEMORY_EXIT,
                                        runner.LEASE_LAPSED_EXIT}
