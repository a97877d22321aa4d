"""Exits with code 3 at once, without a response (one attempt)."""

import os
from typing import Any, NoReturn

max_attempts = 1


def run(params: dict[str, Any]) -> NoReturn:
    os._exit(3)
