"""Event <-> stream entry fields <-> wire frame.

The stream entry keeps the event already encoded as the wire JSON minus its
`id` (which Redis assigns). A gateway turns an entry into a frame by splicing
the id into those bytes: no decode, and one encode per event per gateway
however many members receive it.
"""

from __future__ import annotations

import struct
import time
from datetime import UTC, datetime
from typing import Any

import orjson

# Entry types that steer gateways instead of reaching clients.
CONTROL_HEARTBEAT = "_heartbeat"
CONTROL_REVOKE = "_revoke"
MAX_ID_PART = 2**64 - 1


# (second, its text), replaced as a whole: any thread reads a matching pair. Formatting
# each time (strftime) was 2 % of a gateway's CPU in a connect storm, where every
# join sends a few frames.
_second_text: tuple[int, str] = (-1, "")


def utc_timestamp(moment: datetime | None = None) -> str:
    """ISO 8601 in UTC with microseconds and a `Z`, as every frame carries."""
    global _second_text
    if moment is not None:
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    second, micro = divmod(time.time_ns() // 1000, 1_000_000)
    cached = _second_text
    if cached[0] != second:
        cached = _second_text = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{micro:06d}Z"


def encode_event(type_: str, room: str, data: dict[str, Any], sender: str,
                 timestamp: str | None = None) -> bytes:
    return orjson.dumps({"type": type_, "room": room, "data": data, "sender": sender,
                         "timestamp": timestamp or utc_timestamp()})


def encode_control(type_: str, payload: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": type_, **payload})


def frame_from_entry(encoded: bytes, entry_id: str) -> str:
    """The wire frame of a room event: its stored JSON with `"id"` appended."""
    return (encoded[:-1] + b',"id":"' + entry_id.encode() + b'"}').decode()


def event_frame(encoded: bytes, entry_id: str) -> bytes:
    """A room event as a complete WebSocket frame, ready for every member's socket."""
    return ws_text_frame(encoded[:-1] + b',"id":"' + entry_id.encode() + b'"}')


def decode_control(encoded: bytes) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(encoded)
    return value


def direct_frame(type_: str, data: dict[str, Any] | None = None, *, room: str | None = None,
                 ref: str | int | None = None) -> str:
    """A direct reply (no stream id): room_joined, pong, ack, error, ..."""
    frame: dict[str, Any] = {"type": type_}
    if room is not None:
        frame["room"] = room
    if data is not None:
        frame["data"] = data
    if ref is not None:
        frame["ref"] = ref
    frame["timestamp"] = utc_timestamp()
    return orjson.dumps(frame).decode()


def error_frame(code: int, message: str, *, room: str | None = None,
                ref: str | int | None = None) -> str:
    return direct_frame("error", {"error": message, "code": code}, room=room, ref=ref)


def parse_stream_id(text: str) -> tuple[int, int] | None:
    """`ms-seq` as a comparable tuple, or None when malformed."""
    if not isinstance(text, str) or len(text) > 41:
        return None
    ms, sep, seq = text.partition("-")
    if not sep or not ms.isdigit() or not seq.isdigit() or not ms.isascii() or not seq.isascii():
        return None
    parsed = int(ms), int(seq)
    if parsed[0] > MAX_ID_PART or parsed[1] > MAX_ID_PART:
        return None  # Redis ids are two unsigned 64-bit numbers
    return parsed


def trusted_id_key(raw: bytes | str) -> tuple[int, int]:
    """The (ms, seq) of an id Redis itself returned: no validation, it is on the
    fan-out's per-entry path. Ids from clients go through `parse_stream_id`."""
    if isinstance(raw, bytes):
        ms, _, seq = raw.partition(b"-")
        return int(ms), int(seq)
    text_ms, _, text_seq = raw.partition("-")
    return int(text_ms), int(text_seq)


def ws_text_frame(payload: bytes) -> bytes:
    """A complete, unmasked, final WebSocket text frame (RFC 6455 §5.2) around
    `payload`, so one event's frame is built once and written to every member."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


def ws_frame_payload(frame: bytes) -> str:
    """The text inside a frame made by `ws_text_frame`."""
    marker = frame[1] & 0x7F
    start = 2 if marker < 126 else (4 if marker == 126 else 10)
    return frame[start:].decode()
