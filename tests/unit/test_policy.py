"""The error policy (pgcc/policy.py): one class per error, and how it is told."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from pgcc._policy import ErrorClass, classify, describe


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


@pytest.mark.parametrize("error", [
    errors.ConnectionException(),  # class 08
    errors.ConnectionFailure(),
    errors.SqlclientUnableToEstablishSqlconnection(),
    errors.CrashShutdown(),
    errors.IdleSessionTimeout(),
    errors.TooManyConnections(),
    psycopg.InterfaceError("the connection is closed"),
    ConnectionResetError(104, "Connection reset by peer"),
    TimeoutError("timed out"),
], ids=lambda e: type(e).__name__)
def test_another_session_may_succeed_where_this_one_cannot(error: BaseException) -> None:
    assert classify(error) is ErrorClass.CONNECTION


@pytest.mark.parametrize("error", [
    errors.InvalidTextRepresentation(),  # class 22
    errors.CharacterNotInRepertoire(),
    errors.StringDataRightTruncation(),
    errors.StatementTooComplex(),  # class 54
    OverflowError("int too large"),
    ValueError("NaN is not JSON"),
    TypeError("not serializable"),
], ids=lambda e: type(e).__name__)
def test_a_value_of_one_job_is_at_fault(error: BaseException) -> None:
    assert classify(error) is ErrorClass.JOB


@pytest.mark.parametrize("error", [
    errors.DeadlockDetected(),
    errors.SerializationFailure(),
    errors.SyntaxError(),
    errors.UndefinedTable(),
    psycopg.ProgrammingError("no sqlstate"),
    KeyError("x"),
], ids=lambda e: type(e).__name__)
def test_anything_else_is_retried_as_other(error: BaseException) -> None:
    assert classify(error) is ErrorClass.OTHER


def test_describe_gives_the_first_line_and_the_sqlstate() -> None:
    error = errors.UniqueViolation("duplicate key value\nDETAIL:  Key (id)=(1) exists.")
    assert describe(error) == f"duplicate key value [{errors.UniqueViolation.sqlstate}]"


def test_describe_of_an_error_without_text_names_its_type() -> None:
    assert describe(RuntimeError()) == "RuntimeError"
    assert describe(ValueError("  bad value\n more")) == "bad value"
