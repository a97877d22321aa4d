"""The task the chaos tests and scripts/soak.py run, and the table it logs to.

Each run writes a row from its own connection (reconnecting, so it survives a
database restart) with database-clock start, last-seen and end times, and
holds its queue's advisory lock while it runs: `lock_ok` is false if another
run of the same queue held it at any write. The checks read that table.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

# The task module, a real file; install() writes its settings beside it.
SOURCE_PATH = Path(__file__).resolve().parent / "tasks" / "misc" / "chaos.py"


def install(conn: psycopg.Connection[Any], log: sql.Composable, tasks: Path, name: str,
            dsn: str, space: int) -> None:
    """Create the log table and put the task module `name` into `tasks`, with its
    settings beside it (`name`.json: no task, only *.py files are)."""
    conn.execute(sql.SQL(
        "CREATE TABLE {} (id bigserial PRIMARY KEY, job_id bigint NOT NULL, queue text,"
        " attempt int NOT NULL, pid int NOT NULL, started_at timestamptz NOT NULL,"
        " seen_at timestamptz NOT NULL, ended_at timestamptz, lock_ok boolean NOT NULL)"
    ).format(log))
    tasks.mkdir(parents=True, exist_ok=True)
    settings = {"dsn": dsn, "log": log.as_string(conn), "space": space}
    (tasks / f"{name}.json").write_text(json.dumps(settings))
    shutil.copy(SOURCE_PATH, tasks / f"{name}.py")
