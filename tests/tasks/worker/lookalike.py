"""Returns text that merely looks like a NUL escape, and an emoji: fine to store."""

from typing import Any


def run(params: dict[str, Any]) -> str:
    return "\\u0000 \U0001F600"
