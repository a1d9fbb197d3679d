"""Sans-I/O core of one connection: a client frame in, a list of actions out.

No awaits, no sockets, no Redis: parsing, validation and rate limiting are
decided here and tested with plain function calls. The connection applies
the actions (join with an access check, enqueue a message, reply, close).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.close_codes import CloseCode, ErrorCode
from shared.codec import direct_frame, error_frame
from shared.rooms import InvalidRoom, Room

Ref = str | int | None
MAX_REF_LENGTH = 64
CONSECUTIVE_LIMIT_ERRORS_BEFORE_CLOSE = 100
RATE_LIMIT_MESSAGE = "Rate limit exceeded"
INVALID_ROOM_MESSAGE = "Invalid room format"
_UINT64_MAX = 2**64 - 1
_STREAM_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
# A client's idempotency key for send_message (SPEC §3): short, from a safe alphabet.
CLIENT_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# Stands for a `since` that is no stream id: parses as none, so it is never recovered.
UNRECOVERABLE_SINCE = "invalid"


@dataclass(frozen=True, slots=True)
class Reply:
    frame: str


@dataclass(frozen=True, slots=True)
class JoinRoom:
    room: Room
    since: str | None
    ref: Ref


@dataclass(frozen=True, slots=True)
class LeaveRoom:
    room: Room
    ref: Ref


@dataclass(frozen=True, slots=True)
class SendMessage:
    room: Room
    content: str
    ref: Ref
    key: str | None = None  # the client's idempotency key, when it sent one


@dataclass(frozen=True, slots=True)
class PresenceQuery:
    room: Room
    ref: Ref


@dataclass(frozen=True, slots=True)
class RefreshToken:
    token: str
    ref: Ref


@dataclass(frozen=True, slots=True)
class Close:
    code: CloseCode
    reason: str


Action = Reply | JoinRoom | LeaveRoom | SendMessage | PresenceQuery | RefreshToken | Close


class FrameError(Exception):
    """The frame is not a valid command; answered with `error` 4400."""

    def __init__(self, message: str, ref: Ref = None) -> None:
        super().__init__(message)
        self.message = message
        self.ref = ref


class TokenBucket:
    """`rate` tokens per second up to `burst`; one token per client frame."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key[:40]!r}")
        result[key] = value
    return result


_decoder = json.JSONDecoder(parse_constant=_reject_constant,
                            object_pairs_hook=_no_duplicate_keys)


def parse_json(text: str) -> Any:
    """Strict JSON: no NaN/Infinity, no duplicate keys, bounded nesting and numbers."""
    try:
        return _decoder.decode(text)
    except RecursionError:
        raise FrameError("JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, huge ints, our hooks
        raise FrameError(f"invalid JSON: {str(exc)[:120]}") from None


_ALLOWED_FIELDS = frozenset({"type", "room", "data", "ref"})
_NEEDS_ROOM = frozenset({"join_room", "leave_room", "send_message", "presence"})


class Session:
    def __init__(self, *, rate_limit: float, rate_burst: int, max_content_length: int,
                 clock: Callable[[], float]) -> None:
        self._clock = clock
        self._bucket = TokenBucket(rate_limit, rate_burst, clock())
        self._max_content = max_content_length
        self._limited_in_a_row = 0

    def receive(self, frame: str | bytes) -> list[Action]:
        """Never raises: every frame, however malformed, becomes actions.

        The rate limit is checked before the frame is even parsed, so a flood
        costs one token-bucket step per frame. The 100th limited frame in a row
        is answered with its error and then the close (1008).
        """
        if not self._bucket.take(self._clock()):
            self._limited_in_a_row += 1
            error = Reply(error_frame(ErrorCode.TOO_MANY, RATE_LIMIT_MESSAGE))
            if self._limited_in_a_row >= CONSECUTIVE_LIMIT_ERRORS_BEFORE_CLOSE:
                return [error, Close(CloseCode.POLICY_VIOLATION, RATE_LIMIT_MESSAGE)]
            return [error]
        self._limited_in_a_row = 0
        try:
            return [self._decide(frame)]
        except FrameError as exc:
            return [Reply(error_frame(ErrorCode.BAD_REQUEST, exc.message, ref=exc.ref))]
        except InvalidRoom as exc:
            ref = exc.args[1] if len(exc.args) > 1 else None
            return [Reply(error_frame(ErrorCode.FORBIDDEN, INVALID_ROOM_MESSAGE, ref=ref))]

    def _decide(self, frame: str | bytes) -> Action:
        if not isinstance(frame, str):
            raise FrameError("binary frames are not supported; send JSON text")
        message = parse_json(frame)
        if not isinstance(message, dict):
            raise FrameError("a frame must be a JSON object")
        ref = _ref(message.get("ref"))
        unknown = set(message) - _ALLOWED_FIELDS
        if unknown:
            raise FrameError(f"unknown field {sorted(unknown)[0][:40]!r}", ref)
        kind = message.get("type")
        if not isinstance(kind, str):
            raise FrameError("'type' must be a string", ref)
        data = message.get("data")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise FrameError("'data' must be an object", ref)
        room: Room | None = None
        if kind in _NEEDS_ROOM:
            try:
                room = Room.parse(message.get("room"))
            except InvalidRoom:
                raise InvalidRoom(INVALID_ROOM_MESSAGE, ref) from None
        return self._command(kind, room, data, ref)

    def _command(self, kind: str, room: Room | None, data: dict[str, Any], ref: Ref) -> Action:
        if kind == "ping":
            return Reply(direct_frame("pong", ref=ref))
        if kind == "join_room" and room is not None:
            _only_fields(data, {"since"}, ref)
            return JoinRoom(room, _since(data.get("since"), ref), ref)
        if kind == "leave_room" and room is not None:
            return LeaveRoom(room, ref)
        if kind == "send_message" and room is not None:
            _only_fields(data, {"content", "key"}, ref)
            key = data.get("key")
            if key is not None and (not isinstance(key, str) or not CLIENT_KEY.fullmatch(key)):
                raise FrameError("'data.key' must be 1-64 characters of [A-Za-z0-9_.:-]", ref)
            content = data.get("content")
            if not isinstance(content, str) or not content:
                raise FrameError("'data.content' must be a non-empty string", ref)
            if not _encodable(content):
                raise FrameError("'data.content' must be valid Unicode text", ref)
            if len(content) > self._max_content:
                raise FrameError(f"'data.content' exceeds {self._max_content} characters", ref)
            return SendMessage(room, content, ref, key)
        if kind == "presence" and room is not None:
            return PresenceQuery(room, ref)
        if kind == "refresh":
            _only_fields(data, {"token"}, ref)
            token = data.get("token")
            if not isinstance(token, str) or not token or not _encodable(token):
                raise FrameError("'data.token' must be a string", ref)
            return RefreshToken(token, ref)
        raise FrameError(f"unknown message type {kind[:40]!r}", ref)


def _ref(value: object) -> Ref:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise FrameError("'ref' must be a string or an integer")
    if isinstance(value, str) and len(value) > MAX_REF_LENGTH:
        raise FrameError(f"'ref' longer than {MAX_REF_LENGTH} characters")
    if isinstance(value, str) and not _encodable(value):
        raise FrameError("'ref' must be valid Unicode text")
    if isinstance(value, int) and abs(value) > 2**63:
        raise FrameError("'ref' integer out of range")
    return value


def _only_fields(data: dict[str, Any], allowed: set[str], ref: Ref) -> None:
    extra = set(data) - allowed
    if extra:
        name = "data." + sorted(extra)[0][:40]
        raise FrameError(f"unknown field {name!r}", ref)


def _since(value: object, ref: Ref) -> str | None:
    """The `since` to resume from: None, a stream id `ms-seq` within Redis' unsigned
    64-bit range, or UNRECOVERABLE_SINCE for any other string. A string that is no
    stream id is still a join (answered `recovered: false`: the client refetches),
    but it never reaches Redis, where an out-of-range id is a command error."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise FrameError("'data.since' must be a stream id string", ref)
    match = _STREAM_ID.fullmatch(value)
    if match is None or any(int(part) > _UINT64_MAX for part in match.groups()):
        return UNRECOVERABLE_SINCE
    return value


def _encodable(text: str) -> bool:
    """False for strings holding lone surrogates (from JSON escapes like "\\ud800"):
    they cannot be sent back as UTF-8, nor stored by the worker."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
