"""Returns {"ok": true}."""

from typing import Any


def run(params: dict[str, Any]) -> dict[str, bool]:
    return {"ok": True}
