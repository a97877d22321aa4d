"""Task state from Python: AsyncTaskStates and the AsyncTaskState it returns.

The source of pgcc._taskstate too (scripts/async_to_sync.py); the rows, the
checks and what `save` writes are in pgcc._taskstate_base.
"""

from __future__ import annotations

from pgcc._queries import Queries
from pgcc._taskstate_base import (
    AsyncConnect,
    StateFields,
    TaskStateRow,
    check_id,
    read_row,
    saved_row,
)


class AsyncTaskState(StateFields):
    """One task state: its fields, and `save()`."""

    def __init__(self, row: TaskStateRow, connect: AsyncConnect, queries: Queries) -> None:
        super().__init__(row)
        self._connect = connect
        self._queries = queries

    async def save(self) -> None:
        params = self._save_params()
        async with self._connect() as conn:
            cur = conn.cursor(row_factory=saved_row)
            await cur.execute(self._queries["taskstate_save"], params)
            self._saved(await cur.fetchone())


class AsyncTaskStates:
    """`get(id)`: the state with that id, created as pending if new."""

    def __init__(self, connect: AsyncConnect, queries: Queries) -> None:
        self._connect = connect
        self._queries = queries

    async def get(self, state_id: str) -> AsyncTaskState:
        params = {"id": check_id(state_id)}
        async with self._connect() as conn:
            cur = conn.cursor(row_factory=read_row)
            row = None
            # A second try covers a row created by someone else after this
            # statement's snapshot was taken.
            for _ in range(2):
                await cur.execute(self._queries["taskstate_get"], params)
                row = await cur.fetchone()
                if row is not None:
                    break
        assert row is not None
        return AsyncTaskState(row, self._connect, self._queries)


__all__ = ["AsyncTaskState", "AsyncTaskStates"]
