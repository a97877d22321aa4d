"""The code blocks of README.md and docs/*.md run as written.

Each file's fenced blocks run in order against a database of their own, as a
reader would run them one after the other:

- ```python: a script, with this interpreter, in a subprocess;
- ```sh, ```bash, ```shell: bash with -euo pipefail, so every command counts;
  ```console: its `$ ` lines the same way;
- ```sql: sent to the database as it is.

Every subprocess gets PGCC_DSN (the fresh database) and PGCC_SCHEMA=pgcc, and
the venv's bin folder first on PATH, so `pgcc` is this checkout's. A fresh
database rather than a fresh schema: the blocks name the default schema
`pgcc`, as a reader's own would, and `pgcc.Client()` does not read PGCC_SCHEMA.

A block is skipped only when the line before it is the comment
`<!-- not run by tests/e2e/test_readme.py: WHY -->` (installing a venv, starting a
worker that runs until stopped). Blocks fenced as ```text, ```ini, ```dockerfile
or ```yaml are shown, not run (synopses, unit files); any other language fails
the test, so that no block escapes it unnoticed.

What a reader would check is checked: each block exits 0; a block that
schedules writes at least one job, and one that shows a refusal
(`ScheduleError`, `invalid_parameter_value`) writes none; a line a block
prints that is a bare integer is the id of a job that exists. In README,
only the two top commands are marked, and at least one block runs; its jobs
are then run by a real `pgcc worker` on the repo's tasks/, and each ends
done (or cancelled).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgcc import _schema as schema
from tests.paths import REPO
from tests.workers import WorkerProcess, wait_for

ROOT = REPO
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"python", "sh", "bash", "shell", "console", "sql"}
SHOWN = {"text", "ini", "dockerfile", "yaml"}
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
MARK = re.compile(r"^\s*<!--\s*not run by tests/e2e/test_readme\.py:\s*(\S.*?)\s*-->\s*$")
SCHEDULES = re.compile(r"schedule_tasks?\(|pgcc schedule ")
# A block that shows a refusal: it must write nothing.
REFUSES = re.compile(r"ScheduleError|invalid_parameter_value")
BLOCK_TIMEOUT = 120


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, from 1
    lang: str
    code: str
    skip: str | None  # why it is not run, from its marker

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} ({self.lang})"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, with the marker before each, if any."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    previous = ""  # the last non-blank line outside a block
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            if lines[index].strip():
                previous = lines[index]
            index += 1
            continue
        indent, lang = opening[1], opening[2].lower()
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            text = lines[index]
            body.append(text[len(indent):] if text.startswith(indent) else text.lstrip())
            index += 1
        if index >= len(lines):
            raise AssertionError(f"{path.relative_to(ROOT)}: a code block is never closed")
        marker = MARK.match(previous)
        start = index - len(body)  # the opening fence's line number, from 1
        found.append(Block(path, start, lang, "\n".join(body) + "\n",
                           marker[1] if marker else None))
        previous = ""
        index += 1
    return found


def stray_markers(path: Path) -> list[int]:
    """Markers not right before a code block: a block moved away from its marker."""
    lines = path.read_text(encoding="utf-8").splitlines()
    stray = []
    for number, text in enumerate(lines, start=1):
        if MARK.match(text):
            after = [line for line in lines[number:] if line.strip()]
            if not after or not FENCE.match(after[0]):
                stray.append(number)
    return stray


@contextlib.contextmanager
def fresh_database(dsn: str) -> Iterator[str]:
    """A new database with pgcc migrated into schema `pgcc`; dropped afterwards."""
    name = f"pgcc_docs_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("the test server's role may not create databases (CREATEDB)")
    url = make_conninfo(dsn, dbname=name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            schema.migrate(conn, "pgcc")
        yield url
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def job_ids(dsn: str) -> set[int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM pgcc.jobs").fetchall()}


def run_block(block: Block, dsn: str, env: dict[str, str], cwd: Path) -> str:
    """Run one block; its stdout. Fails the test with its output when it fails."""
    if block.lang == "sql":
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(block.code.encode())  # several statements, no parameters
        return ""
    if block.lang == "python":
        script = cwd / f"block_{block.line}.py"
        script.write_text(block.code, encoding="utf-8")
        command = [sys.executable, str(script)]
    else:
        code = block.code
        if block.lang == "console":
            code = "\n".join(line[2:] for line in code.splitlines() if line.startswith("$ "))
        command = ["bash", "-euo", "pipefail", "-c", code]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=BLOCK_TIMEOUT, check=False)
    assert done.returncode == 0, (
        f"{block} exited {done.returncode}\n--- code\n{block.code}"
        f"--- stdout\n{done.stdout}--- stderr\n{done.stderr}")
    return done.stdout


def block_env(dsn: str, home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PGCC_")}
    bin_dir = str(Path(sys.executable).parent)
    env.update(PGCC_DSN=dsn, PGCC_SCHEMA="pgcc", PGCC_HOME=str(home),
               PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    return env


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_code_blocks_run_as_written(path: Path, pg_dsn: str, tmp_path: Path) -> None:
    found = blocks(path)
    unknown = [str(b) for b in found if b.lang not in RUN | SHOWN]
    assert not unknown, f"code blocks of a language this test neither runs nor shows: {unknown}"
    runnable = [b for b in found if b.lang in RUN and b.skip is None]
    if path == ROOT / "README.md":
        assert len(runnable) > 0
        # Exactly the two top commands are not run: they install a venv.
        assert [b.code.split()[0:3] for b in found if b.skip] == [
            ["python3", "-m", "venv"], ["python3", "-m", "venv"]]
    if not runnable:
        pytest.skip(f"{path.relative_to(ROOT)} has no code block to run")
    with fresh_database(pg_dsn) as dsn:
        env = block_env(dsn, tmp_path / "pgcc-home")
        for block in runnable:
            before = job_ids(dsn)
            stdout = run_block(block, dsn, env, tmp_path)
            after = job_ids(dsn)
            if REFUSES.search(block.code):
                assert after == before, f"{block} shows a refusal but wrote a job"
            elif SCHEDULES.search(block.code):
                assert after - before, f"{block} schedules a job but none was written"
            printed = [line.strip() for line in stdout.splitlines()
                       if re.fullmatch(r"\s*-?\d+\s*", line)]
            for text in printed:
                assert int(text) in after, f"{block} printed {text}, which is no job's id"
        if path == ROOT / "README.md":
            run_readme_jobs(dsn, tmp_path)


def run_readme_jobs(dsn: str, tmp_path: Path) -> None:
    """README's jobs run on a real worker with the repo's tasks: each ends done,
    but the one README cancels."""
    worker = WorkerProcess(dsn, "pgcc", ROOT / "tasks", tmp_path / "worker.log",
                           "--lease", "2", "--poll-interval", "0.2", "--concurrency", "2")
    try:
        def settled() -> dict[str, int] | None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                states: dict[str, int] = dict(conn.execute(
                    "SELECT state, count(*) FROM pgcc.jobs GROUP BY state").fetchall())
            return None if states.get("queued") or states.get("running") else states
        states = wait_for(settled, 60, "README's jobs to finish")
    finally:
        code = worker.stop()
    assert code == 0, worker.log()
    assert set(states) == {"done", "cancelled"}, (states, worker.log())
    assert states["cancelled"] == 1
    with psycopg.connect(dsn, autocommit=True) as conn:
        results: list[tuple[Any, ...]] = conn.execute(
            "SELECT parameters, result FROM pgcc.jobs WHERE state = 'done'").fetchall()
    assert all(result == {"myvalue": params["myvalue"]} for params, result in results)


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_markers_sit_right_before_a_block(path: Path) -> None:
    assert stray_markers(path) == []


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_stay_inside_the_repo(path: Path) -> None:
    """A clone has only the repo: relative links resolve in it, none leads out."""
    text = path.read_text(encoding="utf-8")
    assert "shared/" not in text
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        resolved = (path.parent / target.split("#")[0]).resolve()
        assert resolved.is_relative_to(ROOT), f"{target} leads outside the repo"
        assert resolved.exists(), f"{target} does not exist"

