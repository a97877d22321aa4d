"""Returns text with a NUL character."""

from typing import Any


def run(params: dict[str, Any]) -> str:
    return "a\x00b"
