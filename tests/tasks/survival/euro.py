"""Returns a character that a LATIN1 database cannot store."""

from typing import Any


def run(params: dict[str, Any]) -> str:
    return "\u20ac"
