"""Returns a 2 MB string: more than the parameters limit (1 MiB by default)."""

from typing import Any


def run(params: dict[str, Any]) -> str:
    return "x" * 2_000_000
