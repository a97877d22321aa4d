"""Where the database is: --dsn, else PGCC_DSN, else the embedded server."""

from __future__ import annotations

import os

import psycopg

from pgcc import embedded, schema
from pgcc.errors import ConfigurationError
from pgcc.validation import check_schema

DEFAULT_SCHEMA = "pgcc"
_prepared: set[tuple[str, str]] = set()


def resolve_dsn(dsn: str | None, schema_name: str = DEFAULT_SCHEMA) -> str:
    """The DSN to use. On the embedded server, the schema is created on first use."""
    check_schema(schema_name)
    dsn = dsn or os.environ.get("PGCC_DSN") or None
    if dsn is not None:
        return dsn
    dsn = embedded.start()
    if (dsn, schema_name) not in _prepared:
        with connect(dsn) as conn:
            schema.migrate(conn, schema_name)
        _prepared.add((dsn, schema_name))
    return dsn


def connect(dsn: str, **kwargs: object) -> psycopg.Connection[tuple[object, ...]]:
    """A connection in autocommit mode, with a clear error when the server is not there."""
    try:
        return psycopg.connect(dsn, autocommit=True, **kwargs)  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise ConfigurationError(f"cannot connect to PostgreSQL: {first}") from exc
