"""The example tasks/split_work.py, whose piece at offset 3 dies on its first
attempt right after it ran (its progress saved, the next piece scheduled in
its step). The test copies the example beside this module as _split_work.py
(not a task: its name starts with an underscore)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgcc import JobContext

spec = importlib.util.spec_from_file_location(
    "split_work_under_test", Path(__file__).with_name("_split_work.py"))
assert spec is not None and spec.loader is not None
split_work = importlib.util.module_from_spec(spec)
spec.loader.exec_module(split_work)


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    result: dict[str, Any] = split_work.run(params, ctx)
    if params.get("offset") == 3 and ctx.attempt == 1:
        os._exit(1)
    return result
