"""Does nothing."""

from typing import Any


def run(params: dict[str, Any]) -> None:
    pass
