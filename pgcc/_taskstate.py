"""Task state: rows a task keeps between its attempts, so it can be idempotent.

`get(id)` returns the row, created as `pending` on first use. `save()` writes
it back with an optimistic check: if someone saved the same state since it
was read, StaleTaskStateError is raised and nothing is written (no update is
lost silently). Read it again with `get` and decide. A field that cannot be
written (a status that is not a TaskStatus, data JSON cannot hold) raises
TaskStateError before anything is written.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import class_row

from pgcc._queries import Queries
from pgcc._states import TaskStatus
from pgcc._validation import check_name, dump_parameters
from pgcc.errors import ScheduleError, StaleTaskStateError, TaskStateError

STATUSES = tuple(status.value for status in TaskStatus)


@dataclass(frozen=True)
class TaskStateRow:
    """A row of the taskstate table, as the taskstate_get query reads it."""

    id: str
    status: TaskStatus
    error: str | None
    tries_remaining: int | None
    data: Any
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", TaskStatus(self.status))


class SavedRow(NamedTuple):
    """What the taskstate_save query returns."""

    version: int
    updated_at: dt.datetime


_read_row = class_row(TaskStateRow)
_saved_row = class_row(SavedRow)

SyncConnect = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]
AsyncConnect = Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]]


class _StateFields:
    """The row's fields, and the checks `save` makes before writing them."""

    id: str
    status: TaskStatus | str
    error: str | None
    tries_remaining: int | None
    data: Any
    _version: int
    created_at: dt.datetime
    updated_at: dt.datetime

    def __init__(self, row: TaskStateRow) -> None:
        self.id, self.status, self.error = row.id, row.status, row.error
        self.tries_remaining, self.data, self._version = row.tries_remaining, row.data, row.version
        self.created_at, self.updated_at = row.created_at, row.updated_at

    def __repr__(self) -> str:
        return (f"TaskState(id={self.id!r}, status={str(self.status)!r}, error={self.error!r}, "
                f"tries_remaining={self.tries_remaining!r}, data={self.data!r})")

    def _save_params(self) -> dict[str, Any]:
        if self.status not in STATUSES:
            raise TaskStateError(
                f"task state {self.id!r}: status {self.status!r} is not one of "
                f"{', '.join(STATUSES)}"
            )
        if self.tries_remaining is not None and (
            type(self.tries_remaining) is not int
            or not -2**31 <= self.tries_remaining < 2**31  # the column is an integer
        ):
            raise TaskStateError(
                f"task state {self.id!r}: tries_remaining must be a 32-bit int or None"
            )
        if self.error is not None and (not isinstance(self.error, str) or "\x00" in self.error):
            raise TaskStateError(f"task state {self.id!r}: error must be a string "
                                 "(without NUL characters) or None")
        try:  # the checks of every door, so the error names the key path under data
            dump_parameters({"data": self.data})
        except ScheduleError as exc:
            message = str(exc).removeprefix("parameters: ")
            raise TaskStateError(f"task state {self.id!r}: {message}") from None
        data = json.dumps(self.data, ensure_ascii=False, allow_nan=False)
        return {"id": self.id, "status": str(self.status), "error": self.error,
                "tries_remaining": self.tries_remaining, "data": data,
                "version": self._version}

    def _saved(self, row: SavedRow | None) -> None:
        if row is None:
            raise StaleTaskStateError(
                f"task state {self.id!r} was saved by someone else since it was read; "
                "get it again"
            )
        self._version, self.updated_at = row.version, row.updated_at


class TaskState(_StateFields):
    def __init__(self, row: TaskStateRow, connect: SyncConnect, queries: Queries) -> None:
        super().__init__(row)
        self._connect = connect
        self._queries = queries

    def save(self) -> None:
        params = self._save_params()
        with self._connect() as conn:
            cur = conn.cursor(row_factory=_saved_row)
            self._saved(cur.execute(self._queries["taskstate_save"], params).fetchone())


class AsyncTaskState(_StateFields):
    def __init__(self, row: TaskStateRow, connect: AsyncConnect, queries: Queries) -> None:
        super().__init__(row)
        self._connect = connect
        self._queries = queries

    async def save(self) -> None:
        params = self._save_params()
        async with self._connect() as conn:
            cur = conn.cursor(row_factory=_saved_row)
            await cur.execute(self._queries["taskstate_save"], params)
            self._saved(await cur.fetchone())


def _check_id(state_id: object) -> str:
    try:
        return check_name("task state id", state_id)
    except ValueError as exc:
        raise TaskStateError(str(exc)) from None


class TaskStates:
    """`get(id)`: the state with that id, created as pending if new."""

    def __init__(self, connect: SyncConnect, queries: Queries) -> None:
        self._connect = connect
        self._queries = queries

    def get(self, state_id: str) -> TaskState:
        params = {"id": _check_id(state_id)}
        with self._connect() as conn:
            cur = conn.cursor(row_factory=_read_row)
            row = None
            # A second try covers a row created by someone else after this
            # statement's snapshot was taken.
            for _ in range(2):
                row = cur.execute(self._queries["taskstate_get"], params).fetchone()
                if row is not None:
                    break
        assert row is not None
        return TaskState(row, self._connect, self._queries)


class AsyncTaskStates:
    def __init__(self, connect: AsyncConnect, queries: Queries) -> None:
        self._connect = connect
        self._queries = queries

    async def get(self, state_id: str) -> AsyncTaskState:
        params = {"id": _check_id(state_id)}
        async with self._connect() as conn:
            cur = conn.cursor(row_factory=_read_row)
            row = None
            for _ in range(2):
                await cur.execute(self._queries["taskstate_get"], params)
                row = await cur.fetchone()
                if row is not None:
                    break
        assert row is not None
        return AsyncTaskState(row, self._connect, self._queries)

