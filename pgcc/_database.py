"""Where the database is: --dsn, else PGCC_DSN, else the embedded server."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import socket
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.rows import RowFactory, RowMaker

from pgcc import _embedded as embedded
from pgcc import _schema as schema
from pgcc._validation import check_schema
from pgcc.errors import ConfigurationError, DatabaseUnavailable

DEFAULT_SCHEMA = "pgcc"
# Seconds a long-running process waits for a new connection to its server.
LINK_CONNECT_TIMEOUT = 5
# Seconds between a server's looks at whether a Link's client is still there
# while a statement runs (see Link.connection).
CLIENT_CHECK_INTERVAL = 1.0
# Seconds a command or a client waits for its first connection.
DEFAULT_CONNECT_TIMEOUT = 10.0
_announced = False
log = logging.getLogger("pgcc")
_prepared: set[tuple[str, str]] = set()


def connect_timeout() -> float:
    """Seconds to wait for a connection: PGCC_CONNECT_TIMEOUT (the CLI's
    --connect-timeout sets it), else 10."""
    text = os.environ.get("PGCC_CONNECT_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_CONNECT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise ConfigurationError(
            f"PGCC_CONNECT_TIMEOUT={text!r}: not a number of seconds") from None
    if not value > 0:
        raise ConfigurationError(f"PGCC_CONNECT_TIMEOUT={text!r}: must be > 0")
    return value


def _embedded_dsn() -> str:
    """The embedded server's DSN, announced once per process; refused when
    PGCC_EMBEDDED=0 (production, where a missing PGCC_DSN must not quietly
    enqueue into a local database)."""
    global _announced
    if os.environ.get("PGCC_EMBEDDED", "").strip().lower() in ("0", "false", "no", "off"):
        raise DatabaseUnavailable(
            "no database: neither --dsn nor PGCC_DSN is set, and PGCC_EMBEDDED=0 "
            "forbids the embedded server")
    folder = embedded.home_folder()
    if not _announced:
        _announced = True
        log.warning("no --dsn or PGCC_DSN: using the embedded PostgreSQL server in %s "
                    "(PGCC_EMBEDDED=0 makes this an error)", folder)
    return embedded.start()


def resolve_dsn(dsn: str | None, schema_name: str = DEFAULT_SCHEMA, *,
                create: bool = False) -> str:
    """The DSN to use. On the embedded server, the default schema (or any
    schema, with `create`) is created on first use."""
    check_schema(schema_name)
    dsn = dsn or os.environ.get("PGCC_DSN") or None
    if dsn is not None:
        return dsn
    dsn = _embedded_dsn()
    if (create or schema_name == DEFAULT_SCHEMA) and (dsn, schema_name) not in _prepared:
        with connect(dsn) as conn:
            schema.migrate(conn, schema_name)
        _prepared.add((dsn, schema_name))
    return dsn


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)


def connect(dsn: str, **kwargs: object) -> psycopg.Connection[tuple[object, ...]]:
    """A connection in autocommit mode; DatabaseUnavailable, within the connect
    timeout, when the server is not there or refuses the login."""
    kwargs.setdefault("connect_timeout", max(1, math.ceil(connect_timeout())))
    try:
        return psycopg.connect(dsn, autocommit=True, **kwargs)  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {_first_line(exc)}") from exc
    except psycopg.ProgrammingError as exc:  # e.g. a DSN that does not parse
        raise ConfigurationError(f"bad DSN: {_first_line(exc)}") from exc


async def connect_async(dsn: str, **kwargs: object) -> psycopg.AsyncConnection[tuple[object, ...]]:
    """The twin of connect, for asyncio."""
    kwargs.setdefault("connect_timeout", max(1, math.ceil(connect_timeout())))
    try:
        return await psycopg.AsyncConnection.connect(
            dsn, autocommit=True, **kwargs)  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {_first_line(exc)}") from exc
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(f"bad DSN: {_first_line(exc)}") from exc


def require_schema(conn: psycopg.Connection[Any], schema_name: str) -> None:
    """DatabaseUnavailable naming the schema and `pgcc migrate` when the schema
    has no pgcc tables. Nothing is created."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                       [f'"{schema_name}".jobs']).fetchone()
    if not (row and row[0]):
        raise DatabaseUnavailable(
            f"schema {schema_name} has no pgcc tables: run `pgcc migrate --schema "
            f"{schema_name}` (or start a worker) first")


def usable_dsn(dsn: str | None, schema_name: str) -> str:
    """The DSN, checked once: the server answers within the connect timeout and
    the schema has pgcc's tables; DatabaseUnavailable otherwise."""
    resolved = resolve_dsn(dsn, schema_name)
    with connect(resolved) as conn:
        require_schema(conn, schema_name)
    return resolved


# A statement a long-running process sends: its name (for logs), text and
# parameters, and optionally how its rows are read (see named_row); without
# it, rows are plain tuples.
Statement = tuple[str, str, Any] | tuple[str, str, Any, "RowFactory[Any]"]
Rows = list[tuple[Any, ...]]
NamedRow = TypeVar("NamedRow", bound=tuple[Any, ...])


class RowMismatch(TypeError):
    """A query's columns are not the fields of the row type it is read into."""


@functools.cache
def named_row(row_type: type[NamedRow]) -> RowFactory[NamedRow]:
    """A row factory that reads each column into the field of `row_type` (a
    NamedTuple) of the same name, whatever the columns' order in the query;
    a column or field missing on either side raises RowMismatch.

    For the worker's hot path: the columns' names are matched once per
    statement, and when they come in the fields' order (they are written so)
    each row is built straight from the values, as fast as a plain tuple."""
    fields: tuple[str, ...] = row_type._fields  # type: ignore[attr-defined]
    # The row straight from the values, without _make's check of their number:
    # the columns' names were matched to the fields first.
    make: RowMaker[NamedRow] = functools.partial(tuple.__new__, row_type)
    makers: dict[tuple[bytes | None, ...], RowMaker[NamedRow]] = {}

    def maker_for(names: tuple[bytes | None, ...]) -> RowMaker[NamedRow]:
        columns = [name.decode() if name is not None else "?" for name in names]
        if columns == list(fields):
            return make
        if sorted(columns) != sorted(fields):
            raise RowMismatch(f"{row_type.__name__} has fields {', '.join(fields)}; "
                              f"the query returns {', '.join(columns)}")
        order = [columns.index(name) for name in fields]

        def reordered(values: Sequence[Any]) -> NamedRow:
            return make([values[i] for i in order])
        return reordered

    def factory(cursor: Any) -> RowMaker[NamedRow]:
        result = cursor.pgresult
        if result is None or not result.nfields:
            return make  # a statement without rows
        names = tuple(result.fname(i) for i in range(result.nfields))
        found = makers.get(names)
        if found is None:
            found = makers[names] = maker_for(names)
        return found
    return factory


def _parts(statement: Statement) -> tuple[str, str, Any, RowFactory[Any] | None]:
    if len(statement) == 3:
        name, query, params = statement
        return name, query, params, None
    return statement


class StatementFailed(Exception):
    """A statement sent through a Link failed; `results` holds those of the
    transactions of the call that were committed before it."""

    def __init__(self, name: str, cause: BaseException, results: list[list[Rows]]) -> None:
        super().__init__(f"{name}: {cause}")
        self.name = name
        self.cause = cause
        self.results = results

    @property
    def committed(self) -> int:
        return len(self.results)


class Link:
    """The connection a long-running process keeps: opened on demand, dropped
    when it fails (the caller retries later), and cut by a watchdog when a
    call hangs, e.g. on a network that silently stopped forwarding.

    Used by one thread; `cut_if_stuck` is the one method another thread (the
    watchdog) may call."""

    def __init__(self, dsn: str, *, application_name: str = "pgcc",
                 idle_timeout: float | None = None, generic_plans: bool = False) -> None:
        self._dsn = dsn
        self._application_name = application_name
        # For a connection that runs the same few statements all day: psycopg
        # prepares them, and a generic plan spares the planner on every run.
        self._generic_plans = generic_plans
        # Seconds after which the server ends this session if it sent nothing
        # (idle_session_timeout, PostgreSQL 14+; ignored by older servers).
        self._idle_timeout = idle_timeout
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._fd: int | None = None
        self._call_started: float | None = None

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    def connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is None or self._conn.closed:
            # UTF8 on the wire whatever the database's encoding: text that the
            # database cannot hold is then refused by the server for one
            # statement, not by the driver for the whole connection.
            self._conn = psycopg.connect(
                self._dsn, autocommit=True, connect_timeout=LINK_CONNECT_TIMEOUT,
                application_name=self._application_name, client_encoding="UTF8",
            )
            self._fd = self._conn.pgconn.socket
            if self._generic_plans:
                # A plan is kept for the session, and one made while the jobs
                # table looked empty (a fresh deployment, a burst before
                # autovacuum analyzes it) reads the whole table on every call
                # once it has filled. Each of these statements is built on an
                # index; a scan of the table is only ever the last resort.
                self._conn.execute(
                    "SELECT set_config('plan_cache_mode', 'force_generic_plan', false),"
                    " set_config('enable_seqscan', 'off', false)")
            if self._idle_timeout:
                with contextlib.suppress(psycopg.errors.UndefinedObject):
                    self._conn.execute("SELECT set_config('idle_session_timeout', %s, false)",
                                       [f"{max(1, round(self._idle_timeout * 1000))}ms"])
            # A call cut by the watchdog (cut_if_stuck) while its statement
            # waits on a lock: the server would notice the client is gone only
            # when the wait ends, and keep its locks until then (the reaper's
            # leadership among them). PostgreSQL 14+ looks every so often.
            with contextlib.suppress(psycopg.errors.UndefinedObject):
                self._conn.execute("SELECT set_config('client_connection_check_interval', %s,"
                                   " false)", [f"{round(CLIENT_CHECK_INTERVAL * 1000)}ms"])
        return self._conn

    def execute(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement; its rows (none for a statement without rows)."""
        conn = self.connection()
        self._call_started = time.monotonic()
        try:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []
        except psycopg.OperationalError:
            self.close()
            raise
        finally:
            self._call_started = None

    def transactions(self, groups: list[list[Statement]]) -> list[list[Rows]]:
        """Each group of statements as a transaction of its own, in order and in
        one round trip: a failing group leaves the ones before it committed and
        the ones after it not run. Raises StatementFailed naming the group's
        statements.

        One pipeline with a COMMIT after each group but the last: the server
        commits at each COMMIT, and after an error skips everything up to the
        pipeline's end, where the failed transaction is rolled back. A lone
        statement is sent plainly: psycopg's pipeline costs more."""
        results: list[list[Rows]] = []
        names = "connect"
        conn: psycopg.Connection[tuple[Any, ...]] | None = None
        commits: list[Any] = []
        cursors: list[list[Any]] = []
        try:
            conn = self.connection()
            self._call_started = time.monotonic()
            if len(groups) == 1 and len(groups[0]) == 1:
                names, query, params, rows = _parts(groups[0][0])
                cur = _execute(conn, query, params, rows)
                return [[cur.fetchall() if cur.description else []]]
            with conn.pipeline():
                for index, group in enumerate(groups):
                    parts = [_parts(statement) for statement in group]
                    names = ", ".join(part[0] for part in parts)
                    cursors.append([_execute(conn, query, params, rows)
                                    for _, query, params, rows in parts])
                    if index < len(groups) - 1:
                        commits.append(conn.execute("COMMIT"))
            for group_cursors in cursors:
                results.append([cur.fetchall() if cur.description else []
                                for cur in group_cursors])
            return results
        except Exception as exc:
            # The groups whose COMMIT ran are committed.
            done = sum(1 for cur in commits if cur.pgresult is not None
                       and cur.statusmessage == "COMMIT")
            if commits and done < len(groups):
                names = ", ".join(_parts(statement)[0] for statement in groups[done])
            results = []
            with contextlib.suppress(psycopg.Error):
                results = [[cur.fetchall() if cur.description else [] for cur in group]
                           for group in cursors[:done]]
            # A server's refusal leaves the session usable; anything else may not.
            if not (isinstance(exc, psycopg.Error) and exc.sqlstate) or conn is None \
                    or conn.broken:
                self.close()
            raise StatementFailed(names, exc, results) from exc
        finally:
            self._call_started = None

    def cut_if_stuck(self, limit: float) -> bool:
        """From another thread: end a call that has waited more than `limit` seconds."""
        started, fd = self._call_started, self._fd
        if started is None or fd is None or time.monotonic() - started < limit:
            return False
        with contextlib.suppress(OSError):
            sock = socket.socket(fileno=os.dup(fd))
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        return True

    def close(self) -> None:
        conn, self._conn, self._fd = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def _execute(conn: psycopg.Connection[Any], query: str, params: Any,
             rows: RowFactory[Any] | None) -> psycopg.Cursor[Any]:
    if rows is None:
        return conn.execute(query, params)
    return conn.cursor(row_factory=rows).execute(query, params)
