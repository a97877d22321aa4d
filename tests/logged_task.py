"""The task the queue-contention tests and scripts/contention.py run.

Each job writes (job, queue, attempt, start, end, pid) to a log table from its
own connection, timestamps from the database clock; the checks read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

# The task module: a real file, copied into a worker's tasks folder.
SOURCE_PATH = Path(__file__).resolve().parent / "tasks" / "misc" / "logged.py"
SOURCE = SOURCE_PATH.read_text()


def install(conn: psycopg.Connection[Any], schema: str, dsn: str, tasks: Path,
            name: str = "logged") -> dict[str, str]:
    """Create {schema}.run_log and the task module; returns the environment the
    workers need so their children can write to it."""
    conn.execute(sql.SQL(
        "CREATE TABLE {}.run_log (job_id bigint NOT NULL, queue text, attempt int NOT NULL,"
        " started timestamptz NOT NULL, ended timestamptz NOT NULL, pid int NOT NULL)"
    ).format(sql.Identifier(schema)))
    tasks.mkdir(parents=True, exist_ok=True)
    (tasks / f"{name}.py").write_text(SOURCE)
    table = sql.SQL("{}.run_log").format(sql.Identifier(schema)).as_string(conn)
    return {"PGCC_TEST_LOG_DSN": dsn, "PGCC_TEST_LOG_TABLE": table}
