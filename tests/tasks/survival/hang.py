"""Marks that it started, then sleeps an hour (the worker's default timeout)."""

import time
from typing import Any


def run(params: dict[str, Any]) -> None:
    with open(params["mark"], "a") as f:
        f.write("started\n")
    time.sleep(3600)
