"""One PostgreSQL for the session, a fresh schema for each test.

The server is PGCC_TEST_DSN when set; else, with PGCC_TEST_CONTAINERS=1 and a
Docker engine, a testcontainers PostgreSQL; else a throwaway embedded server.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import pgcc
from pgcc import _embedded as embedded
from pgcc import _schema as schema
from tests.paths import REPO


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    if os.environ.get("PGCC_TEST_DSN"):
        yield os.environ["PGCC_TEST_DSN"]
    elif os.environ.get("PGCC_TEST_CONTAINERS") == "1":
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:17", driver=None) as container:
            yield container.get_connection_url()
    else:
        # Not under pytest's tmp dir: pytest keeps that private (0700), and the
        # server runs as another user when the tests run as root.
        home = Path(tempfile.mkdtemp(prefix="pgcc-test-"))
        try:
            yield embedded.start(home, throwaway=True)
        finally:
            embedded.destroy(home)
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def db(pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


@functools.cache
def schema_file_and_record() -> bytes:
    """sql/schema.sql, then schema_migrations as pgcc._schema.migrate creates
    and fills it: every version recorded, as after the migrations."""
    text = resources.files("pgcc.sql").joinpath("schema.sql").read_text(encoding="utf-8")
    record = ", ".join(f"({m.version}, '{m.name}')" for m in schema.migrations())
    return (f"{text}\n"
            f"{schema.MIGRATIONS_TABLE};\n"
            f"INSERT INTO schema_migrations (version, name) VALUES {record};\n").encode()


def create_from_schema_file(conn: psycopg.Connection[Any], name: str) -> None:
    """The schema at the newest version, made as a migration is applied: with
    search_path set to it alone, in one transaction."""
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        conn.execute("SELECT set_config('search_path', %s, true)", [f'"{name}"'])
        conn.execute(schema_file_and_record())


@contextlib.contextmanager
def fresh_schema(dsn: str, prefix: str = "t", *, migrations: bool = False) -> Iterator[str]:
    """A new schema at pgcc's newest version, dropped afterwards.

    Made from sql/schema.sql, in about half the time the eleven migrations
    take: most tests ask for one, and the migrations' own tests ask for
    `migrations=True`. tests/integration/test_schema_file.py holds both ways
    to the same catalog, schema_migrations included.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        if migrations:
            schema.migrate(conn, name)
        else:
            create_from_schema_file(conn, name)
    try:
        yield name
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def schema_name(pg_dsn: str) -> Iterator[str]:
    with fresh_schema(pg_dsn) as name:
        yield name


@pytest.fixture
def migrated_schema(pg_dsn: str) -> Iterator[str]:
    """A new schema made by the migrations themselves (`schema_name` is made
    from sql/schema.sql)."""
    with fresh_schema(pg_dsn, "m", migrations=True) as name:
        yield name


@pytest.fixture
def client(pg_dsn: str, schema_name: str) -> Iterator[pgcc.Client]:
    with pgcc.Client(pg_dsn, schema=schema_name) as c:
        yield c


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def login_role(db: psycopg.Connection[Any], pg_dsn: str) -> Iterator[Callable[[], tuple[str,
                                                                                       str]]]:
    """make() -> (role, dsn): a new LOGIN role with no rights, and a DSN as it."""
    made: list[str] = []

    def make() -> tuple[str, str]:
        role = f"pgcc_role_{uuid.uuid4().hex[:10]}"
        db.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        made.append(role)
        params = conninfo_to_dict(pg_dsn)
        params.pop("password", None)
        return role, make_conninfo("", **{**params, "user": role})

    yield make
    for role in made:
        db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test is marked with its level, the folder it lives in (see
    tests/README.md): `-m unit`, `-m integration`, `-m "not e2e"`..."""
    for item in items:
        level = item.path.parent.name
        if level in LEVELS:
            item.add_marker(level)


LEVELS = ("unit", "integration", "e2e")

pytest_plugins = ["tests.workers"]
