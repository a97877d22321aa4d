"""The outcome writer: what became of each job, written before it is forgotten.

Outcomes wait here until the database has taken them. They are written in a
transaction of their own, ahead of any claim, so a failing claim can never
roll them back. Every write is fenced by the attempt it belongs to, so
sending one again after an unclear failure (a connection lost before the
commit was confirmed) is harmless: it matches nothing the second time.

When a batch is refused because of one job's data (a result the database
cannot store, say, in its encoding), the batch is written one outcome at a
time, and the outcome that is refused alone becomes `failed` with the reason.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import cast

from pgcc._database import Link, Rows, Statement, StatementFailed
from pgcc._policy import ErrorClass, classify, describe
from pgcc._queries import Queries, queue_lock_space
from pgcc._rows import HANDED, IDS, RETRIED, HandedRow, IdRow, RetriedRow
from pgcc._worker.messages import AskedRetry, JobState, NoResponse, Outcome, PutBack, Response

log = logging.getLogger("pgcc.worker")


class OutcomeWriter:
    def __init__(self, queries: Queries, tasks: list[str], max_attempts: list[int]) -> None:
        self._queries = queries
        self._space = queue_lock_space(queries.schema)
        # For the jobs a response's queue goes on with (the finish_in_queues query).
        self._tasks = tasks
        self._max_attempts = max_attempts
        # By kind, each in arrival order; one statement writes each kind.
        self._responses: list[Response] = []
        # No responses and asked-for retries: one statement, one set of rules.
        self._lost: list[NoResponse | AskedRetry] = []
        self._back: list[PutBack] = []
        # How many of each the statements last built carry.
        self._sent = (0, 0, 0)

    def retask(self, tasks: list[str], max_attempts: list[int]) -> None:
        """The worker's tasks changed (--reload)."""
        self._tasks, self._max_attempts = tasks, max_attempts

    def __len__(self) -> int:
        return len(self._responses) + len(self._lost) + len(self._back)

    @property
    def queue_responses(self) -> int:
        """Pending responses whose job had a queue: as many queues may go on
        with their next job in the write."""
        return sum(o.queue is not None for o in self._responses)

    @property
    def has_put_backs(self) -> bool:
        return bool(self._back)

    def pending(self) -> list[Outcome]:
        return [*self._responses, *self._lost, *self._back]

    def add(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            if type(outcome) is Response:
                self._responses.append(outcome)
            elif type(outcome) is NoResponse or type(outcome) is AskedRetry:
                self._lost.append(outcome)
            else:
                self._back.append(outcome)  # type: ignore[arg-type]

    def clear(self) -> None:
        self._responses, self._lost, self._back = [], [], []

    def statements(self, worker_id: int, hand_limit: int,
                   prioritized: bool = True) -> list[Statement]:
        """The statements that write every pending outcome (one per kind). Up
        to `hand_limit` queues whose job ended go on with their next job on
        this worker at once: written() returns those jobs. `prioritized`: see
        the claim query and the worker's rule for it (exchange.py)."""
        self._sent = (len(self._responses), len(self._lost), len(self._back))
        return self._statements(self._responses, self._lost, self._back, worker_id, hand_limit,
                                prioritized)

    def _statements(self, responses: list[Response], lost: list[NoResponse | AskedRetry],
                    back: list[PutBack], worker: int, hand_limit: int,
                    prioritized: bool = True) -> list[Statement]:
        statements: list[Statement] = []
        if any(o.queue is not None for o in responses):
            statements.append(("finish_in_queues", self._queries["finish_in_queues"], {
                "queue_lock_space": self._space, "worker": worker,
                "outcomes": json.dumps(responses, ensure_ascii=False),
                "tasks": self._tasks, "max_attempts": self._max_attempts,
                "hand_limit": hand_limit, "prioritized": prioritized,
            }, HANDED))
        elif responses:
            statements.append(("finish", self._queries["finish"], {
                "worker": worker, "queue_lock_space": self._space,
                "outcomes": json.dumps(responses, ensure_ascii=False),
            }, IDS))
        if lost:
            statements.append(("retry", self._queries["retry"], {
                "worker": worker, "queue_lock_space": self._space, "ids": [o.id for o in lost],
                "tokens": [o.token for o in lost], "reasons": [o.reason for o in lost],
                "delays": [o.after if type(o) is AskedRetry else None for o in lost],
                "asked": [type(o) is AskedRetry for o in lost],
            }, RETRIED))
        if back:
            statements.append(("release", self._queries["release"], {
                "worker": worker, "queue_lock_space": self._space, "ids": [o.id for o in back],
                "tokens": [o.token for o in back], "started": [o.started for o in back],
            }))
        if lost or back:
            # Last, so that it sees what the others wrote (see migration 0007).
            returned: list[Outcome] = [*lost, *back]
            statements.append(("refresh_heads", self._queries["refresh_heads"], {
                "queue_lock_space": self._space, "ids": [o.id for o in returned],
                "tokens": [o.token for o in returned],
            }))
        return statements

    def written(self, results: list[Rows]) -> list[HandedRow]:
        """The statements from `statements()` were committed with these
        results. Returns the jobs started on this worker, as a claim does."""
        responses, lost, back = self._sent
        sent = (self._responses[:responses], self._lost[:lost], self._back[:back])
        del self._responses[:responses], self._lost[:lost], self._back[:back]
        rows = iter(results)
        started: list[HandedRow] = []
        if sent[0] and any(o.queue is not None for o in sent[0]):
            handed = cast(list[HandedRow], next(rows))
            _report_stale(sent[0], [row for row in handed if not row.started], "response")
            started = [row for row in handed if row.started]
        elif sent[0]:
            _report_stale(sent[0], cast(list[IdRow], next(rows)), "response")
        if sent[1]:
            retried = cast(list[RetriedRow], next(rows))
            _report_stale(sent[1], retried, "no-response or retry")
            for row in retried:
                if row.state == JobState.DEAD:
                    log.error("job %s is dead: no response after its last attempt", row.id)
                elif row.state == JobState.FAILED:
                    log.warning("job %s failed: it asked for a retry after its last attempt",
                                row.id)
        return started

    def write_one_by_one(self, link: Link, worker_id: int) -> None:
        """After a batch was refused for its data: each outcome alone, and the
        one refused alone ends `failed` with why. Raises StatementFailed for an
        error that is not the job's (what is left stays pending)."""
        queue = self.pending()
        self.clear()
        try:
            while queue:
                outcome = queue[0]
                # No job goes on from here: this path returns none to the worker.
                single = self._statements(*_by_kind(outcome), worker_id, 0)  # type: ignore[arg-type]
                try:
                    link.transactions([single])
                except StatementFailed as failure:
                    if classify(failure.cause) is not ErrorClass.JOB:
                        raise
                    instead = _substitute(outcome, failure)
                    if instead is None:
                        log.error("job %s: its outcome cannot be stored (%s); dropped: the "
                                  "job is put back when this worker next reconnects",
                                  outcome.id, describe(failure.cause))
                        queue.pop(0)
                    else:
                        queue[0] = instead
                    continue
                queue.pop(0)
        finally:
            self.add(queue)


def _by_kind(outcome: Outcome) -> tuple[list[Outcome], list[Outcome], list[Outcome]]:
    kinds: tuple[list[Outcome], list[Outcome], list[Outcome]] = ([], [], [])
    kind = type(outcome)
    kinds[0 if kind is Response else 2 if kind is PutBack else 1].append(outcome)
    return kinds


def _substitute(outcome: Outcome, failure: StatementFailed) -> Outcome | None:
    """What to write instead of an outcome the database refused for its data:
    the job fails, with a reason in plain ASCII (which every encoding holds);
    failing that, it gave no response. None: nothing more to try."""
    why = _ascii(describe(failure.cause))
    if isinstance(outcome, Response):
        plain = outcome.result is None and (outcome.error or "").isascii()
        if not plain:
            log.error("job %s: its outcome cannot be stored (%s); recording it as failed",
                      outcome.id, why)
            what = "result" if outcome.result is not None else "error"
            return outcome._replace(
                state=JobState.FAILED, result=None,
                error=f"the job's {what} could not be stored: {why}"
                + (f"\n\nThe error was:\n{_ascii(outcome.error)}" if outcome.error else ""))
        return NoResponse(outcome.id, outcome.token, f"its outcome could not be stored: {why}")
    if isinstance(outcome, NoResponse | AskedRetry) and not outcome.reason.isascii():
        return outcome._replace(reason=_ascii(outcome.reason))
    return None


def _ascii(text: str) -> str:
    return text.encode("ascii", "backslashreplace").decode("ascii")


def _report_stale(sent: list[Response] | list[NoResponse | AskedRetry],
                  rows: Sequence[IdRow | HandedRow | RetriedRow], what: str) -> None:
    """Log what the fencing turned away: late answers of attempts no longer current."""
    if len(rows) == len(sent):
        return
    written = {row.id for row in rows}
    for outcome in sent:
        if outcome.id not in written:
            log.warning("job %s: dropped a late %s of an earlier claim (a newer claim or a "
                        "cancel owns the job now)", outcome.id, what)
