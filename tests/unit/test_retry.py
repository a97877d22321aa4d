"""The pure parts of asking for another attempt (pgcc/_retry.py): pgcc.Retry's
checks and error text, which exceptions ask for a retry, a module's retry_on,
and how the outcome travels (framing, the outcome writer). The rules of the
database side (state, delay) are tested with real workers (tests/e2e/test_retry.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

import pgcc
from pgcc._queries import Queries
from pgcc._retry import asked_retry
from pgcc._tasks import TaskLoadError, load
from pgcc._worker import framing
from pgcc._worker.messages import Answer, AskedRetry, JobState, NoResponse
from pgcc._worker.outcomes import OutcomeWriter


def test_retry_is_public_and_a_pgcc_error() -> None:
    assert "Retry" in pgcc.__all__
    assert issubclass(pgcc.Retry, pgcc.PgccError)


@pytest.mark.parametrize(("after", "millis"), [
    (None, None), (0, 0), (5000, 5000), (dt.timedelta(seconds=1.5), 1500)])
def test_after_is_milliseconds_or_a_timedelta(after: int | dt.timedelta | None,
                                               millis: int | None) -> None:
    assert pgcc.Retry(after=after).after == millis


@pytest.mark.parametrize(("after", "error", "message"), [
    (-1, pgcc.ScheduleError, "after must be >= 0 milliseconds, got -1"),
    (1.5, TypeError, "after must be milliseconds \\(int\\) or a timedelta, not float"),
    (True, TypeError, "not bool"),
    ("5", TypeError, "not str"),
    (dt.timedelta(days=-1), pgcc.ScheduleError, "after must be >= 0"),
    (10**15, pgcc.ScheduleError, "100 years"),
])
def test_a_wrong_after_is_refused_clearly(after: object, error: type[Exception],
                                          message: str) -> None:
    with pytest.raises(error, match=message):
        pgcc.Retry(after=after)  # type: ignore[arg-type]


def test_a_reason_must_be_text() -> None:
    with pytest.raises(TypeError, match="reason must be a string, not int"):
        pgcc.Retry(42)  # type: ignore[arg-type]


def test_the_error_says_a_retry_was_asked_for() -> None:
    assert str(pgcc.Retry()) == "the task asked for a retry with the usual backoff"
    assert str(pgcc.Retry(after=5000, reason="rate limited")) == \
        "the task asked for a retry after 5000 ms: rate limited"


def _raised(exc: BaseException, retry_on: tuple[type[BaseException], ...] = ()
            ) -> tuple[str, int | None] | None:
    try:
        raise exc
    except BaseException as raised:
        return asked_retry(raised, retry_on)


def test_which_exceptions_ask_for_a_retry() -> None:
    asked = _raised(pgcc.Retry("later", after=10))
    assert asked is not None and asked[1] == 10
    assert asked[0].startswith("the task asked for a retry after 10 ms: later\n\nTraceback")
    listed = _raised(ConnectionResetError("reset"), (ConnectionError,))
    assert listed is not None and listed[1] is None
    assert listed[0].startswith("ConnectionResetError: reset\n\nTraceback")
    assert _raised(ValueError("no"), (ConnectionError,)) is None
    assert _raised(ValueError("no")) is None


def _module(folder: Path, source: str) -> Path:
    path = folder / "t.py"
    path.write_text(source)
    return path


def test_retry_on_comes_from_the_module(tmp_path: Path) -> None:
    assert load(_module(tmp_path, "def run(p):\n    pass\n")).retry_on == ()
    task = load(_module(tmp_path, "retry_on = (TimeoutError, KeyError)\n"
                                  "def run(p):\n    pass\n"))
    assert task.retry_on == (TimeoutError, KeyError)


@pytest.mark.parametrize("value", ["TimeoutError", "[TimeoutError]", "(1,)", "(object,)",
                                   "TimeoutError,  # noqa\nretry_on = (SystemExit,)"])
def test_a_wrong_retry_on_is_refused_naming_the_module(tmp_path: Path, value: str) -> None:
    path = _module(tmp_path, f"retry_on = {value}\ndef run(p):\n    pass\n")
    with pytest.raises(TaskLoadError, match="retry_on must be a tuple of exception classes"):
        load(path)
    with pytest.raises(TaskLoadError, match=str(path)):
        load(path)


def test_a_retry_answer_crosses_the_pipe() -> None:
    answer = Answer(7, 2, JobState.QUEUED, None, "asked", 0.25, 1500)
    (back,) = framing.Decoder().feed(framing.encode(answer))
    assert back == answer and back.state is JobState.QUEUED
    plain = Answer(7, 2, JobState.DONE, "1", None, 0.25)
    assert framing.Decoder().feed(framing.encode(plain)) == [plain]
    assert plain.retry_after is None


def test_asked_retries_are_written_with_the_no_responses() -> None:
    writer = OutcomeWriter(Queries("unit_retry"), ["a"], [3])
    writer.add([NoResponse(1, 11, "crashed"), AskedRetry(2, 12, "asked", 500),
                AskedRetry(3, 13, "listed", None)])
    statements = writer.statements(4, 0)
    assert [s[0] for s in statements] == ["retry", "refresh_heads"]
    args = statements[0][2]
    assert args["ids"] == [1, 2, 3]
    assert args["delays"] == [None, 500, None]
    assert args["asked"] == [False, True, True]
    assert args["reasons"] == ["crashed", "asked", "listed"]
