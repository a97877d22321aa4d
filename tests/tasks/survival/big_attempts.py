"""max_attempts past PostgreSQL's integer."""

from typing import Any

max_attempts = 2**31


def run(params: dict[str, Any]) -> str:
    return "ok"
