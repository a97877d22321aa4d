"""No database set up: pgcc starts an embedded PostgreSQL, shared by every command
run from the folder, and its data survives a stop."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgcc import _embedded as embedded
from tests.paths import PGCC


class Folder:
    """A user's project folder with no database configured."""

    def __init__(self, path: Path, home: Path) -> None:
        self.path, self.home = path, home
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("PGCC_DSN", "PGCC_SCHEMA", "PGCC_TEST_DSN")}
        self.env["PGCC_HOME"] = str(home)

    def pgcc(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([PGCC, *args], cwd=self.path, env=self.env,
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        return result

    def queued(self) -> int:
        report = json.loads(self.pgcc("status", "--json").stdout)
        return int(report["jobs"]["queued"])


@pytest.fixture
def folder() -> Iterator[Folder]:
    # Not under pytest's tmp_path: as root the server runs as another user, which
    # must traverse the path, and pytest makes its temporary root private again
    # whenever a pytest session starts.
    root = Path(tempfile.mkdtemp(prefix="pgcc-embedded-test-"))
    work = root / "project"
    work.mkdir()
    project = Folder(work, root / "pgcc-home")
    try:
        yield project
    finally:
        subprocess.run([PGCC, "embedded", "stop"], cwd=project.path, env=project.env,
                       capture_output=True, timeout=120, check=False)
        try:
            embedded.stop(project.home)  # in case the command above could not
            stopped = not embedded.status(project.home).running
        except Exception:
            stopped = False
        if stopped:
            shutil.rmtree(root, ignore_errors=True)


def test_embedded_server_from_scratch(folder: Folder) -> None:
    first = folder.pgcc("schedule", "othertask", '{"myvalue": 42}')
    out = first.stdout
    assert out.strip().isdigit() and out == out.strip() + "\n"
    # The fallback is announced, once, naming the folder.
    announced = [line for line in first.stderr.splitlines() if "embedded" in line]
    assert len(announced) == 1 and str(folder.home) in announced[0], first.stderr
    assert (folder.home / "data" / "PG_VERSION").exists()

    # A second command finds the same server and the same job.
    report = json.loads(folder.pgcc("status", "--json").stdout)
    assert report["jobs"]["queued"] == 1
    assert report["tasks"] == {"othertask": {"queued": 1, "running": 0}}

    running = folder.pgcc("embedded", "status").stdout
    assert "running" in running and "not running" not in running

    assert "stopped" in folder.pgcc("embedded", "stop").stdout
    assert "not running" in folder.pgcc("embedded", "status", code=1).stdout
    assert not embedded.status(folder.home).running

    # The next command starts it again; the job is still there.
    assert folder.queued() == 1

    # Any other schema is an error naming it, until `pgcc migrate` creates it.
    refused = folder.pgcc("schedule", "othertask", "--schema", "other_env", code=3)
    assert "other_env" in refused.stderr and "pgcc migrate" in refused.stderr
    folder.pgcc("migrate", "--schema", "other_env")
    folder.pgcc("schedule", "othertask", "--schema", "other_env")
    other = json.loads(folder.pgcc("status", "--json", "--schema", "other_env").stdout)
    assert other["jobs"]["queued"] == 1  # not 2: the default schema's job is not in it
    assert embedded.status(folder.home).running
