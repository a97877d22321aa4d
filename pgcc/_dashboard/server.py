"""Serving the dashboard: its connection pool and uvicorn."""

from __future__ import annotations

from typing import Any

import uvicorn
from psycopg_pool import ConnectionPool

from pgcc._dashboard.app import Settings, create_app, is_loopback


def check_binding(host: str, token: str | None) -> None:
    """A non-loopback address is refused without a token (ValueError)."""
    if token is not None and not token.strip():
        raise ValueError("--token: empty; give a secret of at least 16 characters")
    if token is not None and len(token) < 16:
        raise ValueError("--token: too short; give a secret of at least 16 characters")
    if not is_loopback(host) and token is None:
        raise ValueError(f"--host {host}: not a loopback address; serving beyond this "
                         "machine needs --token (or PGCC_DASHBOARD_TOKEN)")


def open_pool(dsn: str) -> ConnectionPool[Any]:
    pool: ConnectionPool[Any] = ConnectionPool(
        dsn, min_size=1, max_size=4, kwargs={"autocommit": True}, open=False,
        name="pgcc-dashboard")
    pool.open(wait=True, timeout=10)
    return pool


def serve(dsn: str, schema: str, host: str, port: int, token: str | None) -> None:
    pool = open_pool(dsn)
    try:
        app = create_app(pool, Settings(schema=schema, token=token))
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
    finally:
        pool.close()
