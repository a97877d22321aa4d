"""The example tasks/taskstate_pattern.py, with a crash (no response: the worker
runs the job again) put at one point of its first attempt: params["crash"] is
"before body" or "after body". The test copies the example beside this module
as _taskstate_pattern.py (not a task: its name starts with an underscore)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgcc import JobContext

spec = importlib.util.spec_from_file_location(
    "taskstate_pattern_under_test", Path(__file__).with_name("_taskstate_pattern.py"))
assert spec is not None and spec.loader is not None
pattern = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pattern)
original_body = pattern.body


def crashing_body(params: dict[str, Any], ctx: JobContext, failures: int) -> dict[str, Any]:
    if ctx.attempt == 1 and params["crash"] == "before body":
        os._exit(1)
    result: dict[str, Any] = original_body(params, ctx, failures)
    if ctx.attempt == 1 and params["crash"] == "after body":
        os._exit(1)
    return result


pattern.body = crashing_body  # type: ignore[attr-defined]
max_attempts = 3


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    result: dict[str, Any] = pattern.run(params, ctx)
    return result
