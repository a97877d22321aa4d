"""Raises an error whose text holds a lone surrogate."""

from typing import Any


def run(params: dict[str, Any]) -> None:
    raise ValueError(b"\xff".decode("utf-8", "surrogateescape"))
