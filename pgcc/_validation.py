"""Checks every door applies before a job reaches SQL.

The SQL functions enforce the same rules; checking here first lets the error
name the offending key path and keeps a bad value from ever leaving Python.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from typing import Any

from pgcc.errors import ConfigurationError, ParameterTypeError, ScheduleError

NAME_LIMIT = 200
# Attempts a job gets unless its task module says otherwise (the retry and
# reap queries take it from here).
DEFAULT_MAX_ATTEMPTS = 10
# The most attempts a job may be given (the jobs table refuses more).
MAX_ATTEMPTS_LIMIT = 1000
# Deeper parameters are refused: Python's JSON encoder and decoder recurse once
# per level and give up near 1,000, here and in the worker's children.
MAX_DEPTH = 500
MAX_AFTER_MS = 100 * 36525 * 24 * 3600 * 1000 // 100  # 100 years, as in check_job (SQL)
# A longer timeout than this (a year) is a mistake, and would overflow timers;
# the same bound as check_options (SQL) and the jobs table.
MAX_TIMEOUT = 366 * 24 * 3600.0
# A job's priority: higher runs first among due jobs.
MIN_PRIORITY, MAX_PRIORITY, DEFAULT_PRIORITY = -100, 100, 0
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,57}")
JSONValue = dict[str, Any] | list[Any] | str | int | float | bool | None


def check_name(what: str, name: object) -> str:
    """Task and queue names: non-empty, at most 200 characters, printable."""
    # The common case in one step: printable ASCII (no control character, and
    # nothing that cannot be encoded), short and not blank.
    if type(name) is str and name.isascii() and name.isprintable() \
            and len(name) <= NAME_LIMIT and name.strip(" "):
        return name
    if not isinstance(name, str):
        raise ParameterTypeError(f"{what} must be a string, not {type(name).__name__}")
    if not name.strip(" "):  # the same test as btrim() in SQL
        raise ScheduleError(f"{what} must be a non-empty name")
    if len(name) > NAME_LIMIT:
        raise ScheduleError(f"{what} is {len(name)} characters long; the limit is {NAME_LIMIT}")
    if _CONTROL.search(name):
        raise ScheduleError(f"{what} must be printable: it contains a control character")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ScheduleError(f"{what} must be printable: it is not valid Unicode text") from None
    return name


def check_schema(schema: str) -> str:
    if not isinstance(schema, str) or not _SCHEMA.fullmatch(schema):
        raise ConfigurationError(
            f"schema {schema!r} must be 1-58 letters, digits or underscores, "
            "not starting with a digit"
        )
    return schema


def _key_path(parent: str, key: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{parent}.{key}" if parent else key
    return f"{parent}[{json.dumps(key)}]"


def _check_value(value: object, path: str, depth: int = 0) -> None:
    where = path or "parameters"
    kind = type(value)
    if value is None or kind is bool or kind is int:
        return
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise ScheduleError(f"parameters: {where} is {value}, which JSON cannot hold")
        return
    if kind is str:
        _check_text(value, where)  # type: ignore[arg-type]
        return
    if isinstance(value, list | dict) and depth >= MAX_DEPTH:
        shown = where if len(where) <= 60 else where[:60] + "..."
        raise ScheduleError(f"parameters: {shown} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, list):
        for index, element in enumerate(value):
            _check_value(element, f"{path}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str and not isinstance(key, str):
                raise ParameterTypeError(
                    f"parameters: {where} has a key {key!r} of type {type(key).__name__}; "
                    "JSON keys must be strings"
                )
            if not _plain_text(key):
                _check_text(key, f"{where} key {key!r}")
            # Scalars that always survive JSON skip building their key path.
            kind = type(item)
            if item is None or kind is int or kind is bool or (kind is str and _plain_text(item)):
                continue
            _check_value(item, _key_path(path, key), depth + 1)
        return
    if isinstance(value, str):
        # A str subclass, such as a JobState or TaskStatus: JSON holds its text.
        _check_text(value, where)
        return
    hint = " (pass ids, not objects)" if kind not in (tuple, set, bytes, frozenset) else ""
    raise ParameterTypeError(
        f"parameters: {where} is a {kind.__name__}, which does not survive JSON{hint}"
    )


def _plain_text(text: str) -> bool:
    """ASCII without NUL: text _check_text always accepts."""
    return text.isascii() and "\x00" not in text


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise ScheduleError(f"parameters: {where} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ScheduleError(f"parameters: {where} is not valid Unicode text") from None


def check_parameters(parameters: object) -> dict[str, Any]:
    """The parameters as a dict that survives JSON, or an error naming what does not."""
    if parameters is None:
        return {}
    if type(parameters) is not dict:
        raise ParameterTypeError(
            f"parameters must be a JSON object (a dict), not {type(parameters).__name__}"
        )
    _check_value(parameters, "")
    return parameters


def dump_json(value: object) -> str:
    """Compact JSON text of an already checked value."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def dump_parameters(parameters: object) -> str:
    """The parameters as JSON text, or an error naming what does not survive JSON."""
    return dump_json(check_parameters(parameters))


def dump_value(value: object, what: str) -> str:
    """Any JSON value (a step's, say) as JSON text; refused with the errors
    refused parameters get, naming `what` (and the key path inside it)."""
    try:
        _check_value(value, what)
    except ScheduleError as exc:
        raise type(exc)(str(exc).removeprefix("parameters: ")) from None
    return dump_json(value)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ScheduleError(f"parameters: key {key!r} appears twice")
        result[key] = value
    return result


def load_parameters(text: str) -> dict[str, Any]:
    """Parse parameters given as JSON text (the CLI door), strictly."""
    try:
        # NaN and Infinity parse to floats so the check below names their key path.
        value = json.loads(text, parse_constant=float, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise ScheduleError(f"parameters are not valid JSON: {exc}") from None
    except RecursionError:
        raise ScheduleError(f"parameters are nested more than {MAX_DEPTH} levels deep") from None
    if type(value) is not dict:
        raise ScheduleError(f"parameters must be a JSON object, not {_json_type(value)}")
    _check_value(value, "")
    return value


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def check_timing(at: object, after: object) -> tuple[dt.datetime | None, int | None]:
    """`at` and `after` as the SQL door takes them (an aware time, milliseconds)."""
    if at is not None and after is not None:
        raise ScheduleError("give at or after, not both")
    if at is not None:
        if not isinstance(at, dt.datetime):
            raise ParameterTypeError(f"at must be a datetime, not {type(at).__name__}")
        if at.tzinfo is None or at.tzinfo.utcoffset(at) is None:
            raise ScheduleError("at must be timezone-aware (a naive datetime is ambiguous)")
        return at, None
    if after is not None:
        if isinstance(after, dt.timedelta):
            millis = after // dt.timedelta(milliseconds=1)
        elif type(after) is int:
            millis = after
        else:
            raise ParameterTypeError(
                f"after must be milliseconds (int) or a timedelta, not {type(after).__name__}"
            )
        if millis < 0:
            raise ScheduleError(f"after must be >= 0 milliseconds, got {millis}")
        if millis > MAX_AFTER_MS:
            raise ScheduleError(f"after is {millis} milliseconds; the limit is {MAX_AFTER_MS} "
                                "(100 years)")
        return None, millis
    return None, None


def parse_at(text: str) -> dt.datetime:
    """An ISO 8601 time with a UTC offset (the CLI's --at)."""
    try:
        at = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ScheduleError(f"at: {text!r} is not an ISO 8601 time") from None
    check_timing(at, None)
    return at


def check_options(key: object, priority: object, max_attempts: object, timeout: object
                  ) -> dict[str, Any]:
    """The scheduling options, checked as the SQL doors check them (check_options)."""
    if key is not None:
        check_name("key", key)
    if type(priority) is not int:
        raise ParameterTypeError(f"priority must be an int, not {type(priority).__name__}")
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise ScheduleError(f"priority must be from {MIN_PRIORITY} to {MAX_PRIORITY}, "
                            f"got {priority}")
    if max_attempts is not None:
        if type(max_attempts) is not int:
            raise ParameterTypeError(
                f"max_attempts must be an int, not {type(max_attempts).__name__}")
        if not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
            raise ScheduleError(f"max_attempts must be from 1 to {MAX_ATTEMPTS_LIMIT}, "
                                f"got {max_attempts}")
    seconds: float | None = None
    if timeout is not None:
        if isinstance(timeout, dt.timedelta):
            seconds = timeout.total_seconds()
        elif type(timeout) in (int, float):
            seconds = float(timeout)  # type: ignore[arg-type]
        else:
            raise ParameterTypeError(
                f"timeout must be seconds (a number) or a timedelta, not {type(timeout).__name__}")
        if not 0 < seconds < MAX_TIMEOUT:
            raise ScheduleError(f"timeout must be more than 0 and less than {MAX_TIMEOUT:.0f} "
                                f"seconds, got {timeout}")
    return {"key": key, "priority": priority, "max_attempts": max_attempts, "timeout": seconds}
