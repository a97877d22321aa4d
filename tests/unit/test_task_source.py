"""Where tasks come from (pgcc/_tasks.py: TaskSource, resolve_source): a
folder or an importable package, found by reading the file system only, and
helper modules (`_name.py`) that tasks import but that are not tasks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pgcc._tasks import TaskSource, discover, resolve_source
from pgcc.errors import ConfigurationError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_folder_is_a_folder(tmp_path: Path) -> None:
    assert resolve_source(str(tmp_path)) == TaskSource(tmp_path.resolve())


def test_a_package_is_found_without_being_imported(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "src" / "app_under_test" / "__init__.py", "raise SystemExit('no')\n")
    write(tmp_path / "src" / "app_under_test" / "jobs" / "__init__.py", "")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "src"), *sys.path])
    source = resolve_source("app_under_test.jobs", cwd=tmp_path)
    assert source == TaskSource((tmp_path / "src" / "app_under_test" / "jobs").resolve(),
                                "app_under_test.jobs", (tmp_path / "src").resolve())
    assert "app_under_test" not in sys.modules


def test_the_current_folder_is_searched_first(tmp_path: Path) -> None:
    write(tmp_path / "here_app" / "tasks" / "__init__.py", "")
    source = resolve_source("here_app.tasks", cwd=tmp_path)
    assert (source.package, source.root) == ("here_app.tasks", tmp_path.resolve())


@pytest.mark.parametrize("value", ["no_such_app.tasks", "not a name", "../nowhere", ""])
def test_neither_folder_nor_package_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigurationError, match=r"neither a folder nor a package"):
        resolve_source(value or "x..y", cwd=tmp_path)


def test_helpers_are_imported_by_tasks_of_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "folder_tasks"
    write(folder / "_shared.py", "VALUE = 41\n")
    write(folder / "relative.py", "from . import _shared\ndef run(p):\n    return _shared.VALUE\n")
    write(folder / "absolute.py", "import _shared\ndef run(p):\n    return _shared.VALUE + 1\n")
    try:
        tasks, broken = discover(folder)
        assert broken == []
        assert sorted(tasks) == ["absolute", "relative"]
        assert (tasks["relative"].run({}), tasks["absolute"].run({})) == (41, 42)
    finally:
        sys.path.remove(str(folder))
        for name in [n for n in sys.modules if n == "_shared" or n.startswith("pgcc_tasks")]:
            del sys.modules[name]


def test_tasks_of_a_package_import_relatively(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    write(root / "pkg_under_test" / "__init__.py", "")
    write(root / "pkg_under_test" / "tasks" / "__init__.py", "")
    write(root / "pkg_under_test" / "tasks" / "_shared.py", "VALUE = 'shared'\n")
    write(root / "pkg_under_test" / "tasks" / "t.py",
          "from ._shared import VALUE\ndef run(p):\n    return VALUE\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        tasks, broken = discover(resolve_source("pkg_under_test.tasks", cwd=root))
        assert broken == [] and tasks["t"].run({}) == "shared"
        assert sys.modules["pkg_under_test.tasks.t"].__file__ == str(
            (root / "pkg_under_test" / "tasks" / "t.py").resolve())
    finally:
        for name in [n for n in sys.modules if n.startswith("pkg_under_test")]:
            del sys.modules[name]
