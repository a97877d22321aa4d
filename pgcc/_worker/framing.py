"""Message framing on a worker-child pipe; no I/O here.

A frame is a 4-byte big-endian length and that many bytes of pickle. The
worker writes and reads its ends of the pipes without blocking, so it keeps
partial frames in buffers: `encode` gives the bytes to append to an outbox,
and a `Decoder` takes whatever bytes arrived and returns the whole messages.

The records of pgcc._worker.messages travel as plain tuples with a tag and
are rebuilt on arrival: pickling a NamedTuple or an Enum runs Python code for
each object, ten times the cost of a tuple, and every job crosses twice.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

from pgcc._worker.messages import SHUTDOWN, Answer, JobOrder, JobState, Ready

_HEADER = struct.Struct("!I")
# Bytes asked of a pipe per read. Python allocates the whole size first: at
# 128 KiB or more glibc maps fresh pages for it and unmaps them after, three
# system calls and a TLB shootdown across the process's threads on every
# message. Larger messages take several reads; the Decoder joins them.
READ_SIZE = 64 << 10
HEADER_SIZE = _HEADER.size
MAX_FRAME = (1 << 32) - 1


class FrameTooLarge(Exception):
    """A peer announced a frame longer than the reader accepts."""


_STATES = {state.value: state for state in JobState}


def _plain(message: object) -> tuple[Any, ...]:
    if isinstance(message, list):
        return ("jobs", [tuple(order) for order in message])
    if isinstance(message, Answer):
        return ("answer", *message[:2], message.state.value, *message[3:])
    if isinstance(message, Ready):
        return ("ready", message.pid)
    if message is SHUTDOWN:
        return ("shutdown",)
    raise TypeError(f"not a message: {type(message).__name__}")


def _typed(plain: tuple[Any, ...]) -> object:
    kind = plain[0]
    if kind == "jobs":
        return [JobOrder(*fields) for fields in plain[1]]
    if kind == "answer":
        return Answer(plain[1], plain[2], _STATES[plain[3]], *plain[4:])
    if kind == "ready":
        return Ready(plain[1])
    if kind == "shutdown":
        return SHUTDOWN
    raise ValueError(f"unknown message kind {kind!r}")


def encode(message: object) -> bytes:
    """A message (a list of JobOrders, an Answer, Ready or SHUTDOWN) as a frame."""
    payload = pickle.dumps(_plain(message), pickle.HIGHEST_PROTOCOL)
    if len(payload) > MAX_FRAME:
        raise FrameTooLarge(f"a message of {len(payload)} bytes does not fit in a frame")
    return _HEADER.pack(len(payload)) + payload


class Decoder:
    """Turns a stream of bytes back into messages."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max_frame = max_frame

    def feed(self, data: bytes) -> list[Any]:
        """The messages completed by `data` (maybe none)."""
        messages: list[Any] = []
        if self._buffer:
            self._buffer += data
            buffer: bytes | bytearray = self._buffer
        else:  # the common case: read the bytes as they came, without a copy
            buffer = data
        start = 0
        while len(buffer) - start >= HEADER_SIZE:
            (size,) = _HEADER.unpack_from(buffer, start)
            if size > self._max_frame:
                raise FrameTooLarge(f"a frame of {size} bytes; the limit is {self._max_frame}")
            end = start + HEADER_SIZE + size
            if len(buffer) < end:
                break
            messages.append(_typed(pickle.loads(buffer[start + HEADER_SIZE:end])))
            start = end
        if buffer is self._buffer:
            del self._buffer[:start]
        elif start < len(buffer):
            self._buffer += memoryview(buffer)[start:]
        return messages

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole message."""
        return len(self._buffer)
