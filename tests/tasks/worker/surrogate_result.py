"""Returns text with a lone surrogate, which is no valid Unicode."""

from typing import Any


def run(params: dict[str, Any]) -> dict[str, str]:
    return {"s": b"\xff".decode("utf-8", "surrogateescape")}
