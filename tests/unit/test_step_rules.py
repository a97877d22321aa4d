"""The rules of ctx.step that need no database: what JobLost is, which names
and values a step takes (pgcc/_steps_base.py)."""

from __future__ import annotations

import math

import pytest

import pgcc
from pgcc._steps_base import JobSteps


def steps(limit: int | None = 1000) -> JobSteps:
    return JobSteps("pgcc", 1, 2, limit)


def test_job_lost_passes_through_except_exception() -> None:
    assert issubclass(pgcc.JobLost, BaseException)
    assert not issubclass(pgcc.JobLost, Exception)
    with pytest.raises(pgcc.JobLost):
        try:
            raise pgcc.JobLost("job 1 is done now")
        except Exception:  # what a task might write
            pytest.fail("except Exception caught JobLost")
    assert issubclass(pgcc.StepError, pgcc.PgccError) and issubclass(pgcc.StepError, ValueError)


@pytest.mark.parametrize(("name", "message"), [
    ("", "step name must be a non-empty name"),
    ("x" * 201, "step name is 201 characters long; the limit is 200"),
    ("a\nb", "step name must be printable"),
    (3, "step name must be a string, not int"),
])
def test_step_names_follow_the_name_rules(name: object, message: str) -> None:
    with pytest.raises(pgcc.StepError, match=message):
        steps().start(name)


def test_a_name_is_taken_once_done_and_steps_do_not_nest() -> None:
    job = steps()
    assert job.start("charge") == "charge"
    with pytest.raises(pgcc.StepError, match="steps do not nest"):
        job.start("inner")
    job.running = None
    job.done.add("charge")
    with pytest.raises(pgcc.StepError, match="step 'charge' has already run in this job"):
        job.start("charge")


@pytest.mark.parametrize(("value", "error", "message"), [
    ({"amount": math.nan}, pgcc.ScheduleError, "step 'v' value.amount is nan"),
    ({1: "a"}, pgcc.ParameterTypeError, "step 'v' value has a key 1 of type int"),
    ([{"at": object()}], pgcc.ParameterTypeError, r"step 'v' value\[0\].at is a object"),
    ("x" * 2000, pgcc.ScheduleError, "step 'v' value is 2002 bytes as JSON; the limit is 1000"),
])
def test_values_that_do_not_survive_json_are_refused_like_parameters(
        value: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        steps().dump("v", value)


def test_values_that_survive_json_are_taken() -> None:
    assert steps().dump("v", {"a": [1, 2.5, None, True, "é"]}) == '{"a":[1,2.5,null,true,"é"]}'
    assert steps(None).dump("v", "x" * 5000) == '"' + "x" * 5000 + '"'
