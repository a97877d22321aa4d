"""The sync modules are generated from their async twins (scripts/async_to_sync.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("async_to_sync",
                                                  ROOT / "scripts" / "async_to_sync.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("async_to_sync", module)
    spec.loader.exec_module(module)
    return module


generator = _generator()


@pytest.mark.parametrize(("source", "target"), generator.PAIRS)
def test_each_sync_module_is_what_its_async_twin_generates(source: str, target: str) -> None:
    wanted = generator.to_sync((ROOT / source).read_text(), source)
    assert (ROOT / target).read_text() == wanted, \
        f"{target} is out of date: run python scripts/async_to_sync.py"


SOURCE = '''"""Things, asynchronously: AsyncClient.

More words about it.
"""

import asyncio
from collections.abc import AsyncIterator


class AsyncClient:
    """An AsyncClient's docstring (asyncio stays)."""

    async def __aenter__(self) -> AsyncClient:  # an AsyncClient
        await asyncio.sleep(1)
        async with self.x() as c:
            return await c.y(await z())

    async def pool(self) -> None:
        if True:  # ASYNC
            a = await asyncio.to_thread(f, 1)
        else:
            a = f(1)
            if a:
                b = 2

        lock = asyncio.Lock()
'''

SYNC = '''"""Things, asynchronously: Client.

Generated from m.py by scripts/async_to_sync.py: edit that
file, not this one.
"""

import threading
from collections.abc import Iterator


class Client:
    """An Client's docstring (asyncio stays)."""

    def __enter__(self) -> Client:  # an Client
        time.sleep(1)
        with self.x() as c:
            return c.y(z())

    def pool(self) -> None:
        a = f(1)
        if a:
            b = 2

        lock = threading.Lock()
'''


def test_async_and_await_go_names_are_renamed_and_the_else_branch_stays() -> None:
    assert generator.to_sync(SOURCE, "m.py") == SYNC


def test_an_async_block_without_an_else_goes_whole() -> None:
    text = '"""Doc."""\n\nif True:  # ASYNC\n    import inspect\n\n\ndef f() -> None:\n    pass\n'
    assert generator.to_sync(text, "m.py").endswith(
        '"""\n\n\ndef f() -> None:\n    pass\n')


def test_awaitable_is_unwrapped_and_a_signature_moves_left_with_its_def() -> None:
    text = ('"""Doc."""\n\n\nasync def run(steps: int,\n'
            '              connect: Callable[[], Awaitable[AsyncConnection[Any]]]) -> int:\n'
            '    return await connect()\n')
    assert generator.to_sync(text, "m.py").endswith(
        'def run(steps: int,\n'
        '        connect: Callable[[], Connection[Any]]) -> int:\n'
        '    return connect()\n')


def test_a_module_without_a_docstring_is_refused() -> None:
    with pytest.raises(ValueError, match="no module docstring"):
        generator.to_sync("x = 1\n", "m.py")


def test_check_mode_names_a_stale_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.py").write_text(SOURCE)
    (tmp_path / "b.py").write_text("stale\n")
    monkeypatch.setattr(generator, "ROOT", tmp_path)
    monkeypatch.setattr(generator, "PAIRS", [("a.py", "b.py")])
    assert generator.main(["--check"]) == 1
    assert "out of date: b.py" in capsys.readouterr().err
    assert (tmp_path / "b.py").read_text() == "stale\n"
    assert generator.main([]) == 0
    assert generator.main(["--check"]) == 0
