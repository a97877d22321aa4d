"""Unit tests run without PostgreSQL: a test here that asks for a database
fixture (pg_dsn, db, schema_name, client, start_worker...) fails at once
instead of starting a server. Such a test belongs in tests/integration/."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    raise pytest.UsageError("a unit test asked for PostgreSQL (the pg_dsn fixture): "
                            "move it to tests/integration/")
