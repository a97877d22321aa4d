"""The outcome writer (pgcc/worker/outcomes.py): which statements it builds for
the outcomes it holds, what it keeps after a write, and what it writes instead
of an outcome the database refused. No database: the statements are only built,
and the one-by-one path runs against a stand-in for the connection."""

from __future__ import annotations

import json
from typing import Any

from psycopg import errors

from pgcc._database import Rows, Statement, StatementFailed
from pgcc._queries import Queries, queue_lock_space
from pgcc._rows import HandedRow, IdRow, RetriedRow
from pgcc._worker.messages import JobState, NoResponse, Outcome, PutBack, Response
from pgcc._worker.outcomes import OutcomeWriter, _substitute

SCHEMA = "unit_outcomes"
WORKER = 4


def writer(*outcomes: Outcome) -> OutcomeWriter:
    w = OutcomeWriter(Queries(SCHEMA), ["a", "b"], [3, 10])
    w.add(list(outcomes))
    return w


def names(statements: list[Statement]) -> list[str]:
    return [statement[0] for statement in statements]


def params(statements: list[Statement], name: str) -> dict[str, Any]:
    (found,) = [s[2] for s in statements if s[0] == name]
    return found  # type: ignore[no-any-return]


def test_nothing_pending_writes_nothing() -> None:
    w = writer()
    assert len(w) == 0 and w.statements(WORKER, 5) == []


def test_responses_without_a_queue_are_one_finish() -> None:
    done = Response(1, 11, JobState.DONE, '{"x": 1}', None)
    failed = Response(2, 12, JobState.FAILED, None, "boom")
    statements = writer(done, failed).statements(WORKER, 5)
    assert names(statements) == ["finish"]
    _, query, args, *_ = statements[0]
    assert query == Queries(SCHEMA)["finish"]
    assert args["worker"] == WORKER
    assert args["queue_lock_space"] == queue_lock_space(SCHEMA)
    assert json.loads(args["outcomes"]) == [[1, 11, "done", '{"x": 1}', None, None],
                                            [2, 12, "failed", None, "boom", None]]


def test_a_response_with_a_queue_is_written_by_one_statement_that_may_hand_on() -> None:
    w = writer(Response(1, 11, JobState.DONE, "1", None, "q"),
               Response(2, 12, JobState.DONE, "2", None))
    assert w.queue_responses == 1
    statements = w.statements(WORKER, 3, prioritized=False)
    # One statement (the function takes the queues' locks first): one plain
    # round trip, no pipeline.
    assert names(statements) == ["finish_in_queues"]
    finish = params(statements, "finish_in_queues")
    assert finish["worker"] == WORKER
    assert finish["queue_lock_space"] == queue_lock_space(SCHEMA)
    assert finish["hand_limit"] == 3 and finish["prioritized"] is False
    assert finish["tasks"] == ["a", "b"] and finish["max_attempts"] == [3, 10]
    assert [o[0] for o in json.loads(finish["outcomes"])] == [1, 2]


def test_lost_and_put_back_jobs_are_retried_released_then_heads_refreshed() -> None:
    w = writer(PutBack(3, 13, started=True), Response(1, 11, JobState.DONE, "1", None),
               NoResponse(2, 12, "crashed"), PutBack(4, 14, started=False))
    assert w.has_put_backs
    statements = w.statements(WORKER, 0)
    # One statement per kind, whatever the order of arrival; heads last.
    assert names(statements) == ["finish", "retry", "release", "refresh_heads"]
    assert params(statements, "retry") == {
        "worker": WORKER, "queue_lock_space": queue_lock_space(SCHEMA),
        "ids": [2], "tokens": [12], "reasons": ["crashed"], "delays": [None],
        "asked": [False]}
    assert params(statements, "release") == {
        "worker": WORKER, "queue_lock_space": queue_lock_space(SCHEMA),
        "ids": [3, 4], "tokens": [13, 14], "started": [True, False]}
    refresh = params(statements, "refresh_heads")
    assert refresh["ids"] == [2, 3, 4] and refresh["tokens"] == [12, 13, 14]


def test_every_statement_is_the_named_query_of_the_schema() -> None:
    w = writer(Response(1, 11, JobState.DONE, "1", None, "q"), NoResponse(2, 12, "x"),
               PutBack(3, 13, started=True))
    for name, query, *_ in w.statements(WORKER, 1):
        assert query == Queries(SCHEMA)[name]
        assert f'"{SCHEMA}".' in query


def test_what_arrives_during_a_write_stays_pending_after_it() -> None:
    w = writer(Response(1, 11, JobState.DONE, "1", None), NoResponse(2, 12, "lost"))
    w.statements(WORKER, 0)
    late = Response(3, 13, JobState.DONE, "3", None)
    w.add([late])
    assert w.written([[IdRow(1)], [RetriedRow(2, "queued")], []]) == []
    assert w.pending() == [late]


def test_jobs_handed_on_in_the_write_are_returned_as_a_claim_returns_them() -> None:
    w = writer(Response(1, 11, JobState.DONE, "1", None, "q"))
    w.statements(WORKER, 1)
    # finish_in_queues rows: (started here?, id, ...).
    ended = HandedRow(False, 1, None, None, None, None, None, None)  # type: ignore[arg-type]
    handed = HandedRow(True, 7, "t", "{}", "q", 1, "2026-12-02 10:00:00+00", 21)
    assert w.written([[ended, handed]]) == [handed]
    assert len(w) == 0


def test_clear_forgets_everything() -> None:
    w = writer(Response(1, 11, JobState.DONE, "1", None), PutBack(3, 13, started=True))
    w.clear()
    assert len(w) == 0 and not w.has_put_backs and w.statements(WORKER, 0) == []


# --- what is written instead of a refused outcome ------------------------------------------


def _refused() -> StatementFailed:
    return StatementFailed("finish", errors.UntranslatableCharacter(
        'character with byte sequence 0xe2 0x82 0xac in encoding "UTF8" has no equivalent '
        'in encoding "LATIN1"'), [])


def test_a_refused_result_becomes_a_failure_in_plain_ascii() -> None:
    instead = _substitute(Response(5, 1, JobState.DONE, '"€"', None), _refused())
    assert isinstance(instead, Response)
    assert instead.state is JobState.FAILED and instead.result is None
    assert instead.error is not None and instead.error.isascii()
    assert "result could not be stored" in instead.error and "LATIN1" in instead.error


def test_a_refused_failure_ends_as_no_response_then_nothing() -> None:
    first = _substitute(Response(5, 1, JobState.FAILED, None, "ValueError: €"), _refused())
    assert isinstance(first, Response) and first.error is not None and first.error.isascii()
    second = _substitute(first, _refused())
    assert isinstance(second, NoResponse) and second.reason.isascii()
    assert _substitute(second, _refused()) is None


class LatinLink:
    """Stands in for a Link to a LATIN1 database: refuses any write with a
    character outside Latin-1, as the server would; records what it took."""

    def __init__(self) -> None:
        self.taken: list[Statement] = []

    def transactions(self, groups: list[list[Statement]]) -> list[list[Rows]]:
        for group in groups:
            for statement in group:
                try:
                    str(statement[2]).encode("latin-1")
                except UnicodeEncodeError as exc:
                    raise StatementFailed(statement[0], errors.UntranslatableCharacter(
                        "character has no equivalent in encoding \"LATIN1\""), []) from exc
            self.taken.extend(group)
        return [[[] for _ in group] for group in groups]


def test_one_by_one_only_the_refused_outcome_changes() -> None:
    w = writer(Response(1, 11, JobState.DONE, '"café"', None),
               Response(2, 12, JobState.DONE, '"€"', None),
               NoResponse(3, 13, "crashed"))
    link = LatinLink()
    w.write_one_by_one(link, WORKER)  # type: ignore[arg-type]
    assert len(w) == 0
    finished = [json.loads(s[2]["outcomes"])[0] for s in link.taken if s[0] == "finish"]
    assert finished[0] == [1, 11, "done", '"café"', None, None]
    assert finished[1][:4] == [2, 12, "failed", None]
    assert "result could not be stored" in finished[1][4]
    assert [s[2]["ids"] for s in link.taken if s[0] == "retry"] == [[3]]
