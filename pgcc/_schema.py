"""Migrations: the numbered files of sql/migrations, applied once each."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import NamedTuple

import psycopg
from psycopg import sql
from psycopg.rows import class_row, scalar_row

from pgcc._queries import lock_space
from pgcc._validation import check_schema
from pgcc.errors import ConfigurationError, DatabaseUnavailable

_FILE = re.compile(r"(\d{4})_(\w+)\.sql")
# The record of the versions applied, made in the schema by the first migration run.
MIGRATIONS_TABLE = ("CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())")


class LiveWorkers(NamedTuple):
    """Workers whose lease has not run out, and where they run."""

    workers: int
    places: str | None


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str


def migrations() -> list[Migration]:
    found = []
    for entry in resources.files("pgcc.sql.migrations").iterdir():
        match = _FILE.fullmatch(entry.name)
        if match:
            found.append(
                Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8"))
            )
    return sorted(found, key=lambda m: m.version)


def migrate(conn: psycopg.Connection[object], schema: str,
            target: int | None = None) -> list[int]:
    """Bring `schema` up to date (or up to version `target`, for tests of the
    upgrades); returns the versions applied now.

    Idempotent, and safe when several processes run it at once: an advisory
    lock serialises them, and each version is recorded in the same
    transaction that applies it.
    """
    check_schema(schema)
    known = [m for m in migrations() if target is None or m.version <= target]
    newest = max((m.version for m in known), default=0)
    # Up to date already: nothing to lock or create, so a role without the
    # right to create (a worker's, see pgcc._grants) may start on it.
    current = current_version(conn, schema)
    _refuse_newer(schema, current, newest)
    if current == newest:
        return []
    applied_now: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, 1)", [lock_space(schema)])
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        # Unqualified names in the migration files land in this schema.
        conn.execute("SELECT set_config('search_path', %s, true)", [f'"{schema}"'])
        conn.execute(MIGRATIONS_TABLE)
        done = set(conn.cursor(row_factory=scalar_row).execute(
            "SELECT version FROM schema_migrations").fetchall())
        _refuse_newer(schema, max(done, default=None), newest)
        if done and max(done) < newest:
            _refuse_live_workers(conn, schema, max(done))
        for migration in known:
            if migration.version in done:
                continue
            conn.execute(migration.text.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                [migration.version, migration.name],
            )
            applied_now.append(migration.version)
    return applied_now


def _refuse_newer(schema: str, version: int | None, newest: int) -> None:
    if version is not None and version > newest:
        raise ConfigurationError(
            f"schema {schema} is at version {version}, newer than this pgcc knows "
            f"({newest}): upgrade pgcc on this machine (an older worker must not run "
            "against a newer schema)")


def _refuse_live_workers(conn: psycopg.Connection[object], schema: str, version: int) -> None:
    """Workers of one version must not share a schema with those of another:
    an upgrade waits until the older workers have stopped. A worker whose lease
    ran out counts as stopped (the reaper takes its jobs back)."""
    live = conn.cursor(row_factory=class_row(LiveWorkers)).execute(sql.SQL(
        "SELECT count(*) AS workers, string_agg(format('%s pid %s', hostname, pid), ', '"
        " ORDER BY id) AS places FROM {}.workers WHERE heartbeat_at > now() - lease").format(
            sql.Identifier(schema))).fetchone()
    if live and live.workers:
        raise ConfigurationError(
            f"schema {schema} is at version {version} and {live.workers} worker(s) of an "
            f"older pgcc still run on it ({live.places}): stop them, then migrate (workers "
            "of two versions must not share a schema)")


def require_current(conn: psycopg.Connection[object], schema: str) -> None:
    """For `pgcc worker --no-migrate`: the schema must be this pgcc's own version."""
    newest = max((m.version for m in migrations()), default=0)
    current = current_version(conn, schema)
    _refuse_newer(schema, current, newest)
    if current != newest:
        raise DatabaseUnavailable(
            f"schema {schema} is at version {current or 'none'}, older than this pgcc "
            f"({newest}): run `pgcc migrate` (or start the worker without --no-migrate)")


def current_version(conn: psycopg.Connection[object], schema: str) -> int | None:
    cur = conn.cursor(row_factory=scalar_row)
    if not cur.execute("SELECT to_regclass(%s) IS NOT NULL",
                       [f'"{schema}".schema_migrations']).fetchone():
        return None
    query = sql.SQL("SELECT max(version) FROM {}.schema_migrations").format(
        sql.Identifier(schema)
    )
    version: int | None = cur.execute(query).fetchone()
    return version
