"""Task state from Python: TaskStates and the TaskState it returns.

Generated from pgcc/_taskstate_async.py by scripts/async_to_sync.py: edit that
file, not this one.
"""

from __future__ import annotations

from pgcc._queries import Queries
from pgcc._taskstate_base import (
    SyncConnect,
    StateFields,
    TaskStateRow,
    check_id,
    read_row,
    saved_row,
)


class TaskState(StateFields):
    """One task state: its fields, and `save()`."""

    def __init__(self, row: TaskStateRow, connect: SyncConnect, queries: Queries) -> None:
        super().__init__(row)
        self._connect = connect
        self._queries = queries

    def save(self) -> None:
        params = self._save_params()
        with self._connect() as conn:
            cur = conn.cursor(row_factory=saved_row)
            cur.execute(self._queries["taskstate_save"], params)
            self._saved(cur.fetchone())


class TaskStates:
    """`get(id)`: the state with that id, created as pending if new."""

    def __init__(self, connect: SyncConnect, queries: Queries) -> None:
        self._connect = connect
        self._queries = queries

    def get(self, state_id: str) -> TaskState:
        params = {"id": check_id(state_id)}
        with self._connect() as conn:
            cur = conn.cursor(row_factory=read_row)
            row = None
            # A second try covers a row created by someone else after this
            # statement's snapshot was taken.
            for _ in range(2):
                cur.execute(self._queries["taskstate_get"], params)
                row = cur.fetchone()
                if row is not None:
                    break
        assert row is not None
        return TaskState(row, self._connect, self._queries)


__all__ = ["TaskState", "TaskStates"]
