"""sql/schema.sql shows the schema the migrations build: a schema created from
it and one migrated from nothing have the same catalog contents (tables,
columns, types, defaults, constraints, indexes, sequences, function
definitions, triggers, privileges, settings), the schema's name aside."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from importlib import resources
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgcc import _schema as pgcc_schema

# Catalog contents of one schema, each query a list of rows in a fixed order.
# schema_migrations is pgcc._schema's own bookkeeping, not the migrations'.
CATALOG = {
    "relations": """
        SELECT c.relname, c.relkind, c.relpersistence, c.reloptions, c.relacl::text
        FROM pg_class c
        WHERE c.relnamespace = %(ns)s AND c.relname NOT LIKE 'schema\\_migrations%%'
        ORDER BY c.relname""",
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
               a.attcollation::regcollation::text, a.attacl::text
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = %(ns)s AND c.relkind IN ('r', 'v', 'm', 'p')
          AND c.relname <> 'schema_migrations' AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY c.relname, a.attnum""",
    "constraints": """
        SELECT c.relname, k.conname, k.contype, k.condeferrable, k.condeferred,
               k.convalidated, pg_get_constraintdef(k.oid)
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        WHERE c.relnamespace = %(ns)s AND c.relname <> 'schema_migrations'
        ORDER BY c.relname, k.conname""",
    "indexes": """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
        WHERE c.relnamespace = %(ns)s AND c.relname <> 'schema_migrations'
        ORDER BY 1""",
    "sequences": """
        SELECT c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement,
               s.seqmax, s.seqmin, s.seqcache, s.seqcycle
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
        WHERE c.relnamespace = %(ns)s
        ORDER BY c.relname""",
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid),
               p.proacl::text
        FROM pg_proc p
        WHERE p.pronamespace = %(ns)s
        ORDER BY 1, 2""",
    "triggers": """
        SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = %(ns)s AND NOT t.tgisinternal
        ORDER BY 1, 2""",
    "default privileges": """
        SELECT pg_get_userbyid(d.defaclrole), d.defaclobjtype, d.defaclacl::text
        FROM pg_default_acl d
        WHERE d.defaclnamespace = %(ns)s
        ORDER BY 1, 2""",
}


def catalog(conn: psycopg.Connection[Any], name: str) -> dict[str, list[tuple[Any, ...]]]:
    """The schema's catalog contents, its name written {schema}."""
    row = conn.execute("SELECT oid FROM pg_namespace WHERE nspname = %s", [name]).fetchone()
    assert row is not None, f"no schema {name}"
    found: dict[str, list[tuple[Any, ...]]] = {
        what: conn.execute(query, {"ns": row[0]}).fetchall()
        for what, query in CATALOG.items()}
    found["settings"] = conn.execute(sql.SQL("SELECT key, value::text FROM {}.settings"
                                             " ORDER BY key").format(sql.Identifier(name))
                                     ).fetchall()

    def normal(value: Any) -> Any:
        return value.replace(name, "{schema}") if isinstance(value, str) else value
    return {what: [tuple(normal(value) for value in row) for row in rows]
            for what, rows in found.items()}


def schema_file() -> str:
    return resources.files("pgcc.sql").joinpath("schema.sql").read_text(encoding="utf-8")


@contextlib.contextmanager
def schema_from_file(dsn: str) -> Iterator[str]:
    """A schema created from sql/schema.sql as a migration is applied: with
    search_path set to it alone, in one transaction."""
    name = f"f_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
            conn.execute("SELECT set_config('search_path', %s, true)", [f'"{name}"'])
            conn.execute(schema_file().encode())
        try:
            yield name
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def from_file(pg_dsn: str) -> Iterator[str]:
    with schema_from_file(pg_dsn) as name:
        yield name


def test_schema_file_is_the_migrated_schema(db: psycopg.Connection[Any], migrated_schema: str,
                                            from_file: str) -> None:
    migrated, written = catalog(db, migrated_schema), catalog(db, from_file)
    for what in CATALOG.keys() - {"default privileges"}:
        assert migrated[what], f"the comparison sees no {what}"
    for what in migrated:
        assert written[what] == migrated[what], f"sql/schema.sql differs in its {what}"


def test_schema_file_names_the_newest_migration() -> None:
    """Its header says which version it shows."""
    newest = max(m.version for m in pgcc_schema.migrations())
    header = schema_file().split("\n\n", 1)[0]
    assert f"{newest:04d}" in header, f"sql/schema.sql's header should name migration {newest:04d}"


def test_comparison_sees_a_function_body(db: psycopg.Connection[Any], migrated_schema: str,
                                         from_file: str) -> None:
    """The comparison is not blind to a change inside a function."""
    db.execute(sql.SQL("CREATE OR REPLACE FUNCTION {}.new_token() RETURNS bigint"
                       " LANGUAGE sql VOLATILE AS $$ SELECT 2::bigint $$").format(
                           sql.Identifier(from_file)))
    assert catalog(db, from_file)["functions"] != catalog(db, migrated_schema)["functions"]


def bookkeeping(conn: psycopg.Connection[Any], name: str) -> dict[str, list[tuple[Any, ...]]]:
    """schema_migrations: its columns, constraints and recorded versions."""
    table = f'"{name}".schema_migrations'
    return {
        "columns": conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod), attnotnull,"
            " pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a"
            " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
            " ORDER BY attnum", [table]).fetchall(),
        "constraints": conn.execute(
            "SELECT contype, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = %s::regclass ORDER BY 1, 2", [table]).fetchall(),
        "versions": conn.execute(sql.SQL("SELECT version, name FROM {}.schema_migrations"
                                         " ORDER BY version").format(sql.Identifier(name))
                                 ).fetchall(),
    }


def test_the_tests_fresh_schema_is_the_migrated_schema(
        db: psycopg.Connection[Any], migrated_schema: str, schema_name: str) -> None:
    """Most tests get their schema from sql/schema.sql (tests/conftest.py
    fresh_schema), not from the migrations: the same catalog, and the same
    bookkeeping, so that pgcc sees it as migrated."""
    assert catalog(db, schema_name) == catalog(db, migrated_schema)
    assert bookkeeping(db, schema_name) == bookkeeping(db, migrated_schema)
    assert bookkeeping(db, schema_name)["versions"]
    assert pgcc_schema.migrate(db, schema_name) == []
