"""Message framing on a worker-child pipe (pgcc/worker/framing.py): no I/O."""

from __future__ import annotations

import pickle

import pytest

from pgcc._worker import framing
from pgcc._worker.messages import SHUTDOWN, Answer, JobOrder, JobState, Ready

MESSAGES: list[object] = [
    Ready(7),
    [JobOrder(1, "t", '{"a": 1}', 1, None, 77), JobOrder(2, "u", "{}", 3, "q", 78)],
    [],
    Answer(1, 1, JobState.DONE, '"x' + "é" * 5000 + '"', None, 0.5),
    Answer(2, 3, JobState.FAILED, None, "Traceback ...\nValueError: no", 0.0),
    SHUTDOWN,
]


def test_frames_survive_any_split_of_the_stream() -> None:
    messages = [Ready(7), [JobOrder(1, "t", '{"a": 1}', 1, None, 77)],
                Answer(1, 1, JobState.DONE, '"x' + "é" * 5000 + '"', None, 0.5), None]
    stream = b"".join(framing.encode(m) for m in messages)
    for step in (1, 3, 4, 5, 1000, len(stream)):
        decoder = framing.Decoder()
        got = []
        for start in range(0, len(stream), step):
            got.extend(decoder.feed(stream[start:start + step]))
        assert got == messages
        assert decoder.pending == 0


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_each_message_comes_back_as_its_own_type(message: object) -> None:
    (back,) = framing.Decoder().feed(framing.encode(message))
    assert back == message
    assert type(back) is type(message)
    if isinstance(message, list):
        assert isinstance(back, list) and all(type(order) is JobOrder for order in back)
    if isinstance(message, Answer):
        assert isinstance(back, Answer) and back.state is message.state


def test_a_frame_is_its_length_then_that_many_bytes() -> None:
    frame = framing.encode(Ready(42))
    assert int.from_bytes(frame[:framing.HEADER_SIZE], "big") == len(frame) - framing.HEADER_SIZE


def test_a_partial_frame_waits_for_the_rest() -> None:
    frame = framing.encode(Ready(1))
    decoder = framing.Decoder()
    assert decoder.feed(frame[:2]) == []  # half a header
    assert decoder.pending == 2
    assert decoder.feed(frame[2:-1]) == []  # all but the last byte
    assert decoder.pending == len(frame) - 1
    assert decoder.feed(frame[-1:]) == [Ready(1)]
    assert decoder.pending == 0


def test_whole_frames_are_returned_and_the_partial_one_kept() -> None:
    first, second = framing.encode(Ready(1)), framing.encode(Ready(2))
    decoder = framing.Decoder()
    assert decoder.feed(first + second[:5]) == [Ready(1)]
    assert decoder.pending == 5
    assert decoder.feed(second[5:] + first) == [Ready(2), Ready(1)]
    assert decoder.pending == 0


def test_nothing_fed_gives_nothing() -> None:
    decoder = framing.Decoder()
    assert decoder.feed(b"") == []
    assert decoder.pending == 0


def test_a_frame_over_the_limit_is_refused_before_it_is_read() -> None:
    decoder = framing.Decoder(max_frame=100)
    with pytest.raises(framing.FrameTooLarge, match="101 bytes"):
        decoder.feed((101).to_bytes(4, "big") + b"x")


def test_a_frame_over_the_limit_is_refused_when_its_header_arrives_in_pieces() -> None:
    decoder = framing.Decoder(max_frame=100)
    header = (1 << 20).to_bytes(4, "big")
    assert decoder.feed(header[:3]) == []
    with pytest.raises(framing.FrameTooLarge, match="the limit is 100"):
        decoder.feed(header[3:])


def test_a_frame_at_the_limit_is_read() -> None:
    frame = framing.encode(Answer(1, 1, JobState.DONE, '"' + "x" * 200 + '"', None, 0.1))
    decoder = framing.Decoder(max_frame=len(frame) - framing.HEADER_SIZE)
    assert len(decoder.feed(frame)) == 1


def test_something_that_is_not_a_message_is_not_sent() -> None:
    with pytest.raises(TypeError, match="not a message: dict"):
        framing.encode({"id": 1})


def test_an_unknown_kind_of_message_is_refused_on_arrival() -> None:
    payload = pickle.dumps(("hello", 1))
    with pytest.raises(ValueError, match="unknown message kind 'hello'"):
        framing.Decoder().feed(len(payload).to_bytes(4, "big") + payload)
