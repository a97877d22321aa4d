"""The checks every door applies before a job reaches SQL (pgcc/validation.py).

The same rules are tested through the doors, against PostgreSQL, in
tests/integration/test_schedule_rules.py; here each rule alone, without one.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any

import pytest

from pgcc._validation import (
    MAX_AFTER_MS,
    MAX_DEPTH,
    NAME_LIMIT,
    check_name,
    check_parameters,
    check_schema,
    check_timing,
    dump_parameters,
    load_parameters,
    parse_at,
)
from pgcc.errors import ConfigurationError, ParameterTypeError, ScheduleError

UTC = dt.timezone.utc


def nested(levels: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(levels - 1):
        doc = {"a": doc}
    return doc


# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["t", "send_email", "with space", "a.b-c:d/e", "café",
                                  "日本語", "x" * NAME_LIMIT, " padded "])
def test_a_printable_name_up_to_the_limit_is_taken_as_it_is(name: str) -> None:
    assert check_name("task", name) == name


@pytest.mark.parametrize(("name", "message"), [
    ("", "queue must be a non-empty name"),
    ("   ", "queue must be a non-empty name"),
    ("x" * (NAME_LIMIT + 1), f"{NAME_LIMIT + 1} characters long; the limit is {NAME_LIMIT}"),
    ("tab\there", "control character"),
    ("nl\n", "control character"),
    ("nul\x00", "control character"),
    ("c1\x85", "control character"),
    ("a\ud800", "not valid Unicode text"),
], ids=["empty", "blank", "too-long", "tab", "newline", "nul", "c1-control", "surrogate"])
def test_a_bad_name_is_refused_saying_why(name: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        check_name("queue", name)


@pytest.mark.parametrize("name", [None, 1, b"bytes", ["t"]])
def test_a_name_must_be_a_string(name: object) -> None:
    with pytest.raises(ParameterTypeError, match="task must be a string"):
        check_name("task", name)


@pytest.mark.parametrize("schema", ["pgcc", "_x", "A1_b", "s" * 58])
def test_a_schema_is_an_identifier(schema: str) -> None:
    assert check_schema(schema) == schema


@pytest.mark.parametrize("schema", ["", "1abc", "has-dash", "has space", 'x"; DROP', "s" * 59,
                                    "é"])
def test_a_schema_that_needs_quoting_is_refused(schema: str) -> None:
    with pytest.raises(ConfigurationError, match="1-58 letters"):
        check_schema(schema)


# --- parameters ----------------------------------------------------------------------------


def test_no_parameters_are_an_empty_object() -> None:
    assert check_parameters(None) == {}
    assert dump_parameters(None) == "{}"


def test_parameters_that_survive_json_are_taken_as_they_are() -> None:
    doc = {"n": 1, "f": 1.5, "s": "é€\U0001f600", "b": True, "z": None,
           "l": [1, [2, {"k": "v"}]], "nested": nested(MAX_DEPTH - 1)}
    assert check_parameters(doc) is doc
    assert json.loads(dump_parameters(doc)) == doc


def test_parameters_are_dumped_compact_and_not_escaped() -> None:
    assert dump_parameters({"a": [1, 2], "s": "é"}) == '{"a":[1,2],"s":"é"}'


@pytest.mark.parametrize("parameters", [[1, 2], "text", 42, True, (("a", 1),)])
def test_parameters_must_be_a_dict(parameters: object) -> None:
    with pytest.raises(ParameterTypeError, match="must be a JSON object"):
        check_parameters(parameters)


@pytest.mark.parametrize(("parameters", "where"), [
    ({"when": dt.datetime(2030, 1, 1)}, "when is a datetime"),
    ({"a": {"b": [1, 2, decimal.Decimal(1)]}}, r"a\.b\[2\] is a Decimal"),
    ({"odd key": {"x": object()}}, r'\["odd key"\]\.x is a object'),
    ({"ids": {1, 2}}, "ids is a set"),
    ({"t": (1, 2)}, "t is a tuple"),
    ({"raw": b"x"}, "raw is a bytes"),
])
def test_a_value_json_cannot_hold_is_refused_naming_its_path(parameters: dict[str, Any],
                                                             where: str) -> None:
    with pytest.raises(ParameterTypeError, match=where):
        check_parameters(parameters)


def test_an_object_is_refused_with_a_hint_to_pass_ids() -> None:
    class User:
        pass

    with pytest.raises(ParameterTypeError, match=r"pass ids, not objects"):
        check_parameters({"user": User()})
    with pytest.raises(ParameterTypeError) as refused:
        check_parameters({"ids": {1}})
    assert "pass ids" not in str(refused.value)  # a set is no object to look up


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_number_json_cannot_hold_is_refused(value: float) -> None:
    with pytest.raises(ScheduleError, match=r"parameters: a\[0\] is (nan|inf|-inf)"):
        check_parameters({"a": [value]})


def test_a_key_must_be_a_string() -> None:
    with pytest.raises(ParameterTypeError, match="has a key 1 of type int"):
        check_parameters({"a": {1: "x"}})


@pytest.mark.parametrize(("parameters", "message"), [
    ({"s": "a\x00b"}, "s contains a NUL character"),
    ({"k\x00": 1}, "contains a NUL character"),
    ({"s": "\udcff"}, "s is not valid Unicode text"),
])
def test_text_postgresql_cannot_store_is_refused(parameters: dict[str, Any],
                                                 message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        check_parameters(parameters)


def test_parameters_nested_past_the_limit_are_refused() -> None:
    check_parameters(nested(MAX_DEPTH))
    with pytest.raises(ScheduleError, match=f"nested more than {MAX_DEPTH} levels deep"):
        check_parameters(nested(MAX_DEPTH + 1))


# --- parameters as JSON text (the CLI) -----------------------------------------------------


def test_json_text_is_parsed_strictly() -> None:
    assert load_parameters('{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}


@pytest.mark.parametrize(("text", "message"), [
    ("{", "not valid JSON"),
    ("[1, 2]", "must be a JSON object, not an array"),
    ('"s"', "not a string"),
    ("1", "not a number"),
    ("true", "not a boolean"),
    ("null", "not null"),
    ('{"a": 1, "a": 2}', "key 'a' appears twice"),
    ('{"a": NaN}', "a is nan"),
    ('{"a": {"b": Infinity}}', r"a\.b is inf"),
    ('{"s": "\\u0000"}', "NUL character"),
    ("[" * 100_000 + "]" * 100_000, "nested more than"),
])
def test_bad_json_text_is_refused_saying_why(text: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        load_parameters(text)


# --- at and after --------------------------------------------------------------------------


def test_no_time_given_means_now() -> None:
    assert check_timing(None, None) == (None, None)


def test_an_aware_time_is_kept() -> None:
    at = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert check_timing(at, None) == (at, None)


@pytest.mark.parametrize(("after", "millis"), [
    (0, 0), (1500, 1500), (dt.timedelta(seconds=2), 2000),
    (dt.timedelta(microseconds=1999), 1), (MAX_AFTER_MS, MAX_AFTER_MS),
])
def test_after_is_milliseconds(after: int | dt.timedelta, millis: int) -> None:
    assert check_timing(None, after) == (None, millis)


def test_the_longest_delay_is_a_hundred_years() -> None:
    assert dt.timedelta(milliseconds=MAX_AFTER_MS) == dt.timedelta(days=36525)


@pytest.mark.parametrize(("at", "after", "error", "message"), [
    (dt.datetime(2030, 1, 1, tzinfo=UTC), 5, ScheduleError, "not both"),
    (dt.datetime(2030, 1, 1), None, ScheduleError, "timezone-aware"),
    ("2030-01-01T00:00:00Z", None, ParameterTypeError, "at must be a datetime, not str"),
    (dt.date(2030, 1, 1), None, ParameterTypeError, "at must be a datetime, not date"),
    (None, -1, ScheduleError, "after must be >= 0"),
    (None, dt.timedelta(seconds=-1), ScheduleError, "after must be >= 0"),
    (None, MAX_AFTER_MS + 1, ScheduleError, "100 years"),
    (None, 1.5, ParameterTypeError, "not float"),
    (None, True, ParameterTypeError, "not bool"),
    (None, "1000", ParameterTypeError, "not str"),
], ids=["both", "naive", "text-at", "date-at", "negative", "negative-delta", "too-far",
        "float", "bool", "text-after"])
def test_bad_timing_is_refused_saying_why(at: object, after: object,
                                          error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        check_timing(at, after)


@pytest.mark.parametrize(("text", "expect"), [
    ("2030-01-02T03:04:05Z", dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("2030-01-02T03:04:05z", dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("2030-01-02 03:04:05+02:00",
     dt.datetime(2030, 1, 2, 1, 4, 5, tzinfo=UTC)),
])
def test_at_is_parsed_from_iso_8601_with_an_offset(text: str, expect: dt.datetime) -> None:
    assert parse_at(text) == expect


@pytest.mark.parametrize(("text", "message"), [
    ("2030-01-02T03:04:05", "timezone-aware"),
    ("tomorrow", "not an ISO 8601 time"),
    ("", "not an ISO 8601 time"),
])
def test_a_bad_at_is_refused(text: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_at(text)


def test_every_refusal_is_a_value_error() -> None:
    """Callers may catch ValueError: each of pgcc's refusals is one."""
    for error in (ScheduleError, ParameterTypeError, ConfigurationError):
        assert issubclass(error, ValueError)
    assert issubclass(ParameterTypeError, TypeError)
