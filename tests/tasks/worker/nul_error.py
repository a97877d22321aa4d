"""Raises an error whose text holds a NUL character."""

from typing import Any


def run(params: dict[str, Any]) -> None:
    raise ValueError("bad \x00 byte")
