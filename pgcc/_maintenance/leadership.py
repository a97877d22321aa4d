"""Who leads the maintenance: a lease row, not a session.

The leader holds the one row of the schema's `leader` table until the row's
`expires_at`, and renews it a few times per lease; another candidate takes
the row over only once it has expired, by the server's clock, the one clock
all candidates share. A leader that dies, freezes or is cut off leads no
more once its lease has run out, whatever became of its session; one that
stops cleanly resigns, and the next candidate leads at its next look.

Leading is about doing the work once, not about correctness: every duty
locks what it changes (SKIP LOCKED), so two processes that both believe they
lead for a moment (a frozen leader that wakes) cost work, never a job.
"""

from __future__ import annotations

import os
import secrets
import socket
import time

from pgcc._database import Link, StatementFailed
from pgcc._queries import for_schema

# A leader renews its lease this many times per lease: a renewal that is late
# or fails once still leaves it leading.
RENEWALS_PER_LEASE = 3


def candidate_name() -> str:
    """A name no other candidate has, that tells an operator where it runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Leadership:
    """One candidate's view of the lease. Used by one thread."""

    def __init__(self, schema: str, lease: float, name: str | None = None) -> None:
        self._queries = for_schema(schema)
        self.lease = lease
        self.name = name or candidate_name()
        # time.monotonic() when a renewal that succeeded was sent; None: not leading.
        self._renewed_at: float | None = None
        # The row may name this candidate (it led, and has not resigned since).
        self._may_hold_row = False

    def hold(self, link: Link) -> bool:
        """Lead: take the lease if it is free, renew it when due. Whether this
        candidate leads now."""
        now = time.monotonic()
        if self._renewed_at is not None and now - self._renewed_at < self.renew_every:
            return True
        try:
            rows = link.transactions([[("lead", self._queries["lead"],
                                        {"me": self.name, "lease": self.lease})]])[0][0]
        except StatementFailed:
            self._renewed_at = None
            raise
        # Counted from before the call: the server's lease began no earlier.
        self._renewed_at = now if rows else None
        self._may_hold_row = bool(rows)
        return bool(rows)

    @property
    def renew_every(self) -> float:
        return self.lease / RENEWALS_PER_LEASE

    def next_renewal(self) -> float | None:
        """time.monotonic() when the lease is next to be renewed; None: not leading."""
        return None if self._renewed_at is None else self._renewed_at + self.renew_every

    def forget(self) -> None:
        """Lead no more until the next successful `hold` (a failed duty: the
        session may be gone; the lease, if still ours, is renewed at once)."""
        self._renewed_at = None

    def resign(self, link: Link) -> None:
        """Give the lease up, so that the next candidate need not wait for it to expire."""
        self._renewed_at = None
        if self._may_hold_row:
            link.transactions([[("resign", self._queries["resign"], {"me": self.name})]])
            self._may_hold_row = False
