"""What `pgcc worker --reload` looks at (pgcc/_worker/reload.py): the task
folder's Python files, read from the file system, never imported."""

from __future__ import annotations

import os
from pathlib import Path

from pgcc._worker.reload import snapshot


def test_a_snapshot_changes_with_new_changed_and_removed_modules(tmp_path: Path) -> None:
    task = tmp_path / "task.py"
    task.write_text("raise SystemExit('never imported')\n")
    first = snapshot(tmp_path)
    assert snapshot(tmp_path) == first
    helper = tmp_path / "_helper.py"
    helper.write_text("X = 1\n")
    second = snapshot(tmp_path)
    assert second != first
    stat = helper.stat()
    helper.write_text("X = 2\n")  # same size: the time tells
    os.utime(helper, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert snapshot(tmp_path) != second
    helper.unlink()
    assert snapshot(tmp_path) != second


def test_caches_and_other_files_do_not_count(tmp_path: Path) -> None:
    (tmp_path / "task.py").write_text("")
    before = snapshot(tmp_path)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "task.py").write_text("")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "task.tmp").write_text("")
    assert snapshot(tmp_path) == before
