"""Returns a set, which JSON cannot hold."""

from typing import Any


def run(params: dict[str, Any]) -> set[int]:
    return {1, 2}
