"""The worker's parts that do no I/O, tested alone: framing, the error policy,
backoff, and what the outcome writer writes instead of a refused outcome."""

from __future__ import annotations

import pickle

import psycopg
import pytest
from psycopg import errors

from pgcc.database import StatementFailed
from pgcc.policy import ErrorClass, classify
from pgcc.worker import framing
from pgcc.worker.config import Backoff
from pgcc.worker.messages import Answer, JobOrder, JobState, NoResponse, Ready, Response
from pgcc.worker.outcomes import _substitute


def test_frames_survive_any_split_of_the_stream() -> None:
    messages = [Ready(7), [JobOrder(1, "t", '{"a": 1}', 1, None, 77)],
                Answer(1, 1, JobState.DONE, '"x' + "é" * 5000 + '"', None, 0.5), None]
    stream = b"".join(framing.encode(m) for m in messages)
    for step in (1, 3, 4, 5, 1000, len(stream)):
        decoder = framing.Decoder()
        got = []
        for start in range(0, len(stream), step):
            got.extend(decoder.feed(stream[start:start + step]))
        assert got == messages
        assert decoder.pending == 0


def test_a_frame_over_the_limit_is_refused_before_it_is_read() -> None:
    decoder = framing.Decoder(max_frame=100)
    with pytest.raises(framing.FrameTooLarge, match="101 bytes"):
        decoder.feed((101).to_bytes(4, "big") + b"x")


def test_a_message_pickles_as_its_own_type() -> None:
    answer = Answer(1, 2, JobState.FAILED, None, "boom", 0.1)
    back = pickle.loads(pickle.dumps(answer))
    assert back == answer and back.state is JobState.FAILED


@pytest.mark.parametrize(("error", "kind"), [
    (psycopg.OperationalError("server closed the connection unexpectedly"),
     ErrorClass.CONNECTION),
    (errors.AdminShutdown(), ErrorClass.CONNECTION),
    (errors.ReadOnlySqlTransaction(), ErrorClass.CONNECTION),
    (errors.CannotConnectNow(), ErrorClass.CONNECTION),
    (errors.UntranslatableCharacter(), ErrorClass.JOB),
    (errors.ProgramLimitExceeded(), ErrorClass.JOB),
    (errors.NumericValueOutOfRange(), ErrorClass.JOB),
    (psycopg.DataError("timestamp too small"), ErrorClass.JOB),
    (UnicodeEncodeError("latin-1", "€", 0, 1, "no"), ErrorClass.JOB),
    (errors.UniqueViolation(), ErrorClass.OTHER),
    (errors.InsufficientPrivilege(), ErrorClass.OTHER),
    (errors.LockNotAvailable(), ErrorClass.OTHER),
    (errors.UndefinedFunction(), ErrorClass.OTHER),
    (errors.QueryCanceled(), ErrorClass.OTHER),
    (RuntimeError("a bug"), ErrorClass.OTHER),
])
def test_each_error_has_one_class(error: BaseException, kind: ErrorClass) -> None:
    assert classify(error) is kind


def test_backoff_grows_to_its_cap_and_never_overflows() -> None:
    backoff = Backoff(first=0.25, cap=5.0)
    delays = [backoff.next_delay() for _ in range(5000)]
    assert 0.2 <= delays[0] <= 0.25
    assert all(d <= 5.0 for d in delays)
    assert delays[-1] >= 4.0
    backoff.reset()
    assert backoff.next_delay() <= 0.25


def _refused() -> StatementFailed:
    return StatementFailed("finish", errors.UntranslatableCharacter(
        'character with byte sequence 0xe2 0x82 0xac in encoding "UTF8" has no equivalent '
        'in encoding "LATIN1"'), [])


def test_a_refused_result_becomes_a_failure_in_plain_ascii() -> None:
    instead = _substitute(Response(5, 1, JobState.DONE, '"€"', None), _refused())
    assert isinstance(instead, Response)
    assert instead.state is JobState.FAILED and instead.result is None
    assert instead.error is not None and instead.error.isascii()
    assert "result could not be stored" in instead.error and "LATIN1" in instead.error


def test_a_refused_failure_ends_as_no_response_then_nothing() -> None:
    first = _substitute(Response(5, 1, JobState.FAILED, None, "ValueError: €"), _refused())
    assert isinstance(first, Response) and first.error is not None and first.error.isascii()
    second = _substitute(first, _refused())
    assert isinstance(second, NoResponse) and second.reason.isascii()
    assert _substitute(second, _refused()) is None
