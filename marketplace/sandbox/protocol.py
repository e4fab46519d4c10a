"""The frames a tool-call child writes on its per-call result pipe, read by the host.

Each frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON. A child writes a
`{"layers": [...]}` frame before any tool code runs, then one outcome frame. Standard library
only: the fork server imports this module too.
"""

from __future__ import annotations

import json
import os
import struct

_LENGTH = struct.Struct(">I")


def encode_frame(message: dict, *, result: bytes | None = None) -> bytes:
    """`message` as a frame; `result`, already JSON, is added under "result" as it is."""
    body = json.dumps(message, ensure_ascii=False, allow_nan=False).encode()
    if result is not None:
        body = body[:-1] + (b', "result": ' if message else b'"result": ') + result + b"}"
    return _LENGTH.pack(len(body)) + body


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def decode_frames(data: bytes) -> list[dict]:
    """Every frame in `data`; ValueError when the bytes are not a clean sequence of frames."""
    frames = []
    offset = 0
    while offset < len(data):
        if offset + _LENGTH.size > len(data):
            raise ValueError("a frame's length is cut short")
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if offset + length > len(data):
            raise ValueError("a frame is cut short")
        try:
            frame = json.loads(data[offset : offset + length])
        except RecursionError:
            raise ValueError("a frame is nested too deep")
        if not isinstance(frame, dict):
            raise ValueError("a frame is not an object")
        frames.append(frame)
        offset += length
    return frames
