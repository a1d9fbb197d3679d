"""The idempotent publish used by actors: validate, encode, append once by key."""

from __future__ import annotations

from typing import Any

from shared.codec import encode_event
from shared.events import AnyEvent, parse_any_event
from shared.stream_writer import AppendResult, StreamWriter


def publish(writer: StreamWriter, payload: dict[str, Any]) -> AppendResult:
    """Append a validated event; a retried job with the same key gets the first id back."""
    event: AnyEvent = parse_any_event(payload)
    data = event.data.model_dump(mode="json")
    encoded = encode_event(event.type, event.room, data, event.sender)
    return writer.append_event(event.room, encoded, event.key)
