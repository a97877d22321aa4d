"""Sync, without ctx: returns its parameters."""

from typing import Any


def run(params: dict[str, Any]) -> dict[str, Any]:
    return {"got": params}
