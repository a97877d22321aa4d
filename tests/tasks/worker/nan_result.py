"""Returns NaN, which JSON cannot hold."""

from typing import Any


def run(params: dict[str, Any]) -> dict[str, float]:
    return {"x": float("nan")}
