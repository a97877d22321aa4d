"""The worker's message and outcome records (pgcc/worker/messages.py)."""

from __future__ import annotations

import json
import pickle

from pgcc._worker.messages import Answer, JobOrder, JobState, NoResponse, PutBack, Response


def test_a_message_pickles_as_its_own_type() -> None:
    answer = Answer(1, 2, JobState.FAILED, None, "boom", 0.1)
    back = pickle.loads(pickle.dumps(answer))
    assert back == answer and back.state is JobState.FAILED


def test_job_states_are_the_state_column_values() -> None:
    assert [state.value for state in JobState] == [
        "queued", "running", "done", "failed", "dead", "cancelled"]
    assert JobState("done") is JobState.DONE
    text: str = "failed"
    assert text == JobState.FAILED  # compares equal to the text a row holds


def test_a_response_is_sent_to_sql_as_a_positional_json_array() -> None:
    """The finish queries read [id, token, state, result, error, queue] by position."""
    responses = [Response(5, 9, JobState.DONE, '{"n": 1}', None),
                 Response(6, 10, JobState.FAILED, None, "ValueError: é", "q")]
    assert json.loads(json.dumps(responses, ensure_ascii=False)) == [
        [5, 9, "done", '{"n": 1}', None, None],
        [6, 10, "failed", None, "ValueError: é", "q"],
    ]


def test_a_response_has_no_queue_unless_given() -> None:
    assert Response(1, 1, JobState.DONE, None, None).queue is None


def test_fields_by_name() -> None:
    order = JobOrder(id=3, task="t", parameters="{}", attempt=2, queue=None, token=11)
    assert order == (3, "t", "{}", 2, None, 11, None, 0)
    assert NoResponse(3, 11, "crashed").reason == "crashed"
    assert PutBack(3, 11, started=False).started is False
