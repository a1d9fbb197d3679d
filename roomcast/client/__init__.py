"""roomcast client SDK: reconnecting, resuming WebSocket client for roomcast.

async with RoomcastClient("ws://localhost:8000", token) as client:
    await client.join("project:1")
    async for event in client.events():
        ...
"""

from .backoff import Backoff, full_jitter
from .client import ConnectionState, RoomcastClient, TokenProvider
from .dispatch import EventStream
from .errors import ClientClosedError, RoomcastError
from .events import (
    ClientEvent,
    Connected,
    Disconnected,
    NotRecovered,
    Recovered,
    ResyncRequired,
    RoomEvent,
    RoomLeft,
    ServerError,
    ServerMessage,
    event_to_dict,
)
from .replies import Joined, PresenceUser
from .requests import Request
from .stream_ids import StreamId, parse_stream_id

__all__ = [
    "Backoff",
    "ClientClosedError",
    "ClientEvent",
    "Connected",
    "ConnectionState",
    "Disconnected",
    "EventStream",
    "Joined",
    "NotRecovered",
    "PresenceUser",
    "Recovered",
    "Request",
    "ResyncRequired",
    "RoomEvent",
    "RoomLeft",
    "RoomcastClient",
    "RoomcastError",
    "ServerError",
    "ServerMessage",
    "StreamId",
    "TokenProvider",
    "event_to_dict",
    "full_jitter",
    "parse_stream_id",
]
