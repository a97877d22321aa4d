"""Named queries (sql/queries.sql, and the bench's), bound to one schema."""

from __future__ import annotations

import functools
import re
import zlib
from importlib import resources

from psycopg import sql

from pgcc._validation import DEFAULT_MAX_ATTEMPTS

# Python's constants that queries use, written into their text as literals:
# each is defined once, in Python.
CONSTANTS = {"default_max_attempts": sql.Literal(DEFAULT_MAX_ATTEMPTS)}
_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


# The package whose data holds the runtime's queries (sql/ in the repository).
RUNTIME = "pgcc.sql"


# A query's parts for jobs of another priority than 0 stand between these
# lines: NAME is the query with them, NAME/plain without them (the claim's
# cost while no such job waits; see the claim in sql/queries.sql).
WHEN_PRIORITIZED = "-- when prioritized:"
END_WHEN = "-- end when"
PLAIN = "/plain"


@functools.cache
def _texts(filename: str, package: str = RUNTIME) -> dict[str, str]:
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    parts = _NAME.split(text)
    texts = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        texts[name] = _without_comment_lines(body)
        if WHEN_PRIORITIZED in body:
            texts[name + PLAIN] = _without_comment_lines(_without_prioritized(name, body))
    return texts


def _without_prioritized(name: str, body: str) -> str:
    """The query without its "when prioritized" parts."""
    kept: list[str] = []
    inside = False
    for line in body.splitlines():
        marker = line.strip()
        if marker in (WHEN_PRIORITIZED, END_WHEN):
            if inside == (marker == WHEN_PRIORITIZED):
                raise ValueError(f"query {name}: {marker!r} out of place")
            inside = marker == WHEN_PRIORITIZED
        elif not inside:
            kept.append(line)
    if inside:
        raise ValueError(f"query {name}: {WHEN_PRIORITIZED!r} without {END_WHEN!r}")
    return "\n".join(kept)


def _without_comment_lines(body: str) -> str:
    """The statement without its whole-line comments, which are for the reader:
    psycopg caches its parse of a query only up to 4 kB, and the claim with its
    comments and a long schema name is longer."""
    return "\n".join(line for line in body.strip().splitlines()
                     if not line.lstrip().startswith("--"))


class Queries:
    """Every named query of one file, composed once for a schema."""

    def __init__(self, schema: str, filename: str = "queries.sql",
                 package: str = RUNTIME) -> None:
        self.schema = schema
        self._filename = filename
        self._package = package
        self._composed: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        query = self._composed.get(name)
        if query is None:
            text = _texts(self._filename, self._package)[name]
            # Kept as text: psycopg caches the conversion of a text query, and
            # prepares it after a few runs, which a Composed object would defeat.
            composed = sql.SQL(text).format(schema=sql.Identifier(self.schema), **CONSTANTS)
            query = composed.as_string(None)
            self._composed[name] = query
        return query


@functools.cache
def for_schema(schema: str, filename: str = "queries.sql", package: str = RUNTIME) -> Queries:
    return Queries(schema, filename, package)


def channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel of an environment (see notify_jobs in the schema)."""
    return f"pgcc.{schema}"


def _key(text: str) -> int:
    unsigned = zlib.crc32(text.encode())
    return unsigned - (1 << 32) if unsigned >= 1 << 31 else unsigned


def lock_space(schema: str) -> int:
    """The first key of pgcc's own advisory locks in this environment:
    (space, 1) migrations. (space, 0) led the maintenance until schema
    version 13, whose leadership is a lease row."""
    return _key(f"pgcc.{schema}")


def queue_lock_space(schema: str) -> int:
    """The first key of the queues' advisory locks, (space, hashtext(queue)):
    a space of their own, so no queue name can take one of pgcc's own locks."""
    space = _key(f"pgcc.queues.{schema}")
    return space if space != lock_space(schema) else space ^ 1
