"""Takes 10 ms, returns nothing."""

import time
from typing import Any


def run(params: dict[str, Any]) -> None:
    time.sleep(0.01)
