"""Marks that it started, then sleeps an hour; its timeout (2 s) stops it, and
with one attempt only the job then ends dead."""

import time
from typing import Any

timeout = 2
max_attempts = 1


def run(params: dict[str, Any]) -> None:
    with open(params["mark"], "a") as f:
        f.write("started\n")
    time.sleep(3600)
