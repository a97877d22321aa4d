"""Loading task modules (pgcc/tasks.py): what a tasks folder may hold, and what a
task module must define. The module's text is the point of each case, so each
test writes its own module; no worker and no database are involved."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pgcc._tasks import (
    BrokenTask,
    Task,
    TaskLoadError,
    discover,
    load,
    module_paths,
    try_load,
)
from pgcc._validation import DEFAULT_MAX_ATTEMPTS, MAX_ATTEMPTS_LIMIT
from pgcc.errors import ScheduleError
from tests.paths import EXAMPLE_TASKS


def module(folder: Path, name: str, source: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(source)
    return path


def test_a_task_is_named_after_its_file_and_has_the_defaults(tmp_path: Path) -> None:
    task = load(module(tmp_path, "resize", "def run(params):\n    return params\n"))
    assert task.name == "resize" and task.path == tmp_path / "resize.py"
    assert task.run({"a": 1}) == {"a": 1}
    assert not task.wants_ctx and not task.is_async
    assert task.timeout is None and task.max_attempts == DEFAULT_MAX_ATTEMPTS


def test_a_second_parameter_asks_for_ctx(tmp_path: Path) -> None:
    assert load(module(tmp_path, "t", "def run(params, ctx):\n    pass\n")).wants_ctx


def test_an_async_run_is_known_as_such(tmp_path: Path) -> None:
    task = load(module(tmp_path, "t", "async def run(params, ctx):\n    pass\n"))
    assert task.is_async and task.wants_ctx


def test_keyword_only_parameters_do_not_count(tmp_path: Path) -> None:
    task = load(module(tmp_path, "t", "def run(params, *, retries=3):\n    pass\n"))
    assert not task.wants_ctx


def test_timeout_and_max_attempts_come_from_the_module(tmp_path: Path) -> None:
    task = load(module(tmp_path, "t", "timeout = 5\nmax_attempts = 1\n"
                                      "def run(params):\n    pass\n"))
    assert task.timeout == 5.0 and isinstance(task.timeout, float)
    assert task.max_attempts == 1


def test_info_is_what_the_worker_needs_without_the_function(tmp_path: Path) -> None:
    task = load(module(tmp_path, "t", "timeout = 2.5\ndef run(params, ctx):\n    pass\n"))
    info = task.info()
    assert not isinstance(info, Task) and not hasattr(info, "run")
    assert (info.name, info.wants_ctx, info.timeout) == ("t", True, 2.5)


@pytest.mark.parametrize(("source", "message"), [
    ("x = 1\n", "defines no run"),
    ("run = 42\n", "defines no run"),
    ("def run():\n    pass\n", r"run must take \(params\) or \(params, ctx\)"),
    ("def run(a, b, c):\n    pass\n", r"run must take \(params\) or \(params, ctx\)"),
    ("timeout = 0\ndef run(p):\n    pass\n", "timeout must be a positive number"),
    ("timeout = -1\ndef run(p):\n    pass\n", "timeout must be a positive number"),
    ("timeout = True\ndef run(p):\n    pass\n", "timeout must be a positive number"),
    ("timeout = '5'\ndef run(p):\n    pass\n", "timeout must be a positive number"),
    ("timeout = 366 * 24 * 3600\ndef run(p):\n    pass\n", "less than a year"),
    ("timeout = float('nan')\ndef run(p):\n    pass\n", "timeout must be a positive number"),
    ("max_attempts = 0\ndef run(p):\n    pass\n", "max_attempts must be an int from 1"),
    (f"max_attempts = {MAX_ATTEMPTS_LIMIT + 1}\ndef run(p):\n    pass\n",
     f"from 1 to {MAX_ATTEMPTS_LIMIT}"),
    ("max_attempts = 2.0\ndef run(p):\n    pass\n", "not 2.0"),
    ("max_attempts = True\ndef run(p):\n    pass\n", "not True"),
], ids=["no-run", "run-not-callable", "no-params", "three-params", "timeout-zero",
        "timeout-negative", "timeout-bool", "timeout-text", "timeout-a-year", "timeout-nan",
        "attempts-zero", "attempts-too-many", "attempts-float", "attempts-bool"])
def test_a_module_that_cannot_be_a_task_is_refused_saying_why(tmp_path: Path, source: str,
                                                              message: str) -> None:
    path = module(tmp_path, "t", source)
    with pytest.raises(TaskLoadError, match=message):
        load(path)
    broken = try_load(path)
    assert isinstance(broken, BrokenTask) and broken.path == path
    assert str(path) in broken.error


def test_a_file_whose_name_is_no_task_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScheduleError, match="task must be printable"):
        load(module(tmp_path, "tab\there", "def run(params):\n    pass\n"))


def test_a_module_failing_at_import_is_broken_with_its_traceback(tmp_path: Path) -> None:
    broken = try_load(module(tmp_path, "t", "import nothing_of_that_name\n"
                                           "def run(params):\n    pass\n"))
    assert isinstance(broken, BrokenTask)
    assert broken.error == "ModuleNotFoundError: No module named 'nothing_of_that_name'"
    assert "Traceback" in broken.detail and "t.py" in broken.detail


def test_a_module_calling_exit_at_import_is_broken_not_fatal(tmp_path: Path) -> None:
    broken = try_load(module(tmp_path, "t", "import sys\nsys.exit(3)\n"))
    assert isinstance(broken, BrokenTask) and broken.error == "SystemExit: 3"


def test_a_folder_holds_every_py_not_starting_with_an_underscore(tmp_path: Path) -> None:
    for name in ("b.py", "a.py", "_helpers.py", "__init__.py", "notes.txt", "c.pyc"):
        (tmp_path / name).write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.py").write_text("")
    assert [p.name for p in module_paths(tmp_path)] == ["a.py", "b.py"]


def test_discover_loads_the_good_and_reports_the_broken(tmp_path: Path) -> None:
    module(tmp_path, "good", "def run(params):\n    pass\n")
    module(tmp_path, "bad", "raise RuntimeError('not today')\n")
    module(tmp_path, "_private", "raise RuntimeError('never imported')\n")
    tasks, broken = discover(tmp_path)
    assert list(tasks) == ["good"]
    assert [(b.path.name, b.error) for b in broken] == [("bad.py", "RuntimeError: not today")]


def test_every_example_task_loads() -> None:
    tasks, broken = discover(EXAMPLE_TASKS)
    assert broken == []
    assert sorted(tasks) == sorted(p.stem for p in module_paths(EXAMPLE_TASKS))
    assert "send_email" in tasks and tasks["send_email"].is_async


# ---- periodic tasks ---------------------------------------------------------------


def test_a_schedule_makes_a_task_periodic_and_travels_in_its_info(tmp_path: Path) -> None:
    task = load(module(tmp_path, "nightly", 'schedule = "30 2 * * *"\n'
                       'schedule_timezone = "Europe/Berlin"\n'
                       'schedule_parameters = {"full": True, "tables": ["a", "b"]}\n'
                       "def run(params):\n    pass\n"))
    assert task.periodic is not None
    assert task.periodic.cron.expression == "30 2 * * *"
    assert task.periodic.cron.timezone == "Europe/Berlin"
    assert task.periodic.parameters == '{"full":true,"tables":["a","b"]}'
    assert task.info().periodic == task.periodic


def test_a_schedule_defaults_to_utc_and_no_parameters(tmp_path: Path) -> None:
    task = load(module(tmp_path, "t", 'schedule = "*/5 * * * *"\ndef run(params):\n    pass\n'))
    assert task.periodic is not None
    assert task.periodic.cron.timezone == "UTC" and task.periodic.parameters == "{}"
    assert load(module(tmp_path, "u", "def run(params):\n    pass\n")).periodic is None


@pytest.mark.parametrize(("lines", "message"), [
    ('schedule = "*/5 * * *"', r"t\.py: schedule '\*/5 \* \* \*' must have five fields"),
    ('schedule = "0 25 * * *"', r"t\.py: schedule '0 25 \* \* \*' is not a valid cron "
                                "expression: bad hour"),
    ("schedule = 300", r"t\.py: schedule must be a cron expression \(a string\), not int"),
    ('schedule = "* * * * *"\nschedule_timezone = "Berlin"',
     r"t\.py: schedule_timezone 'Berlin' is not a known IANA time zone"),
    ('schedule = "* * * * *"\nschedule_parameters = [1]',
     r"t\.py: schedule_parameters must be a JSON object \(a dict\), not list"),
    ('schedule = "* * * * *"\nschedule_parameters = {"at": object()}',
     r"t\.py: schedule_parameters: at is a object, which does not survive JSON"),
    ('schedule_parameters = {"a": 1}', r"t\.py: schedule_parameters is set but schedule is not"),
])
def test_a_bad_schedule_makes_the_module_broken_saying_what(
        tmp_path: Path, lines: str, message: str) -> None:
    broken = try_load(module(tmp_path, "t", lines + "\ndef run(params):\n    pass\n"))
    assert isinstance(broken, BrokenTask)
    assert broken.path == tmp_path / "t.py"
    assert re.search(message, broken.error), broken.error
