"""RoomcastClient: one logical connection that survives reconnects.

The client keeps the rooms the app joined and the last stream id seen in
each; after any disconnect it reconnects with backoff, rejoins every room
from where it stopped, then flushes what the app sent while offline.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, TypeAlias, TypeVar, overload
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from .backoff import DEFAULT_BASE, DEFAULT_CAP, DEFAULT_RESTART_JITTER, Backoff
from .dispatch import Callback, Dispatcher, EventStream
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
)
from .pacer import Pacer
from .replies import (
    Frame,
    Joined,
    PresenceUser,
    frame_data,
    frame_room,
    parse_ack_key,
    parse_error,
    parse_joined,
    parse_nothing,
    parse_presence,
    parse_raw,
)
from .requests import Request, RequestBook
from .rooms import RoomTracker

T = TypeVar("T")
E = TypeVar("E", bound=ClientEvent)

TokenProvider: TypeAlias = str | Callable[[], str | Awaitable[str]]

DEFAULT_PATH = "/api/v1/ws/connect"
# Close codes after which only a new token can help (SPEC section 2).
AUTH_CLOSE_CODES = frozenset({4401, 4403})
# The server asks us to come back right away (restart, slow consumer).
RESTART_CLOSE_CODES = frozenset({1012, 1013})
# Errors answering a rejoin that asking again cannot change: bad request, forbidden
# (e.g. access revoked while offline), too many rooms. Any other code (4500 internal
# error) is the server's trouble: the room is kept and the rejoin retried.
JOIN_REFUSAL_CODES = frozenset({4400, 4403, 4429})
ABNORMAL_CLOSE = 1006
DEFAULT_HEARTBEAT = 30.0

logger = logging.getLogger("roomcast.client")

# Replies whose request can be found by kind and room if the server left out `ref`.
_REPLY_TO_REQUEST = {
    "room_joined": "join_room",
    "room_left": "leave_room",
    "ack": "send_message",
    "pong": "ping",
    "presence": "presence",
    "refreshed": "refresh",
}


class ConnectionState(StrEnum):
    IDLE = "idle"  # connect() not called yet
    CONNECTING = "connecting"  # opening a socket, or waiting to retry
    RESUMING = "resuming"  # connected; rejoining rooms before flushing the outbox
    OPEN = "open"  # requests go out as they are made
    CLOSED = "closed"  # for good: close() was called or the token was refused


@dataclass(slots=True)
class _Outcome:
    """How one connection attempt ended."""

    code: int
    reason: str


class RoomcastClient:
    """Client for the roomcast WebSocket protocol (see SPEC.md).

    `url` is one gateway URL, or a list of them for failover: after a
    connection ends or an attempt fails, the next attempt goes to the next URL
    of the list (round-robin), so a client leaves a dead gateway on its first
    retry instead of waiting for it to come back.

    `token` is a JWT string, or a function (sync or async) returning a fresh
    one; it is called before every connection attempt.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        token: TokenProvider,
        *,
        backoff_base: float = DEFAULT_BASE,
        backoff_cap: float = DEFAULT_CAP,
        restart_jitter: float = DEFAULT_RESTART_JITTER,
        rng: random.Random | None = None,
        request_timeout: float | None = 10.0,
        open_timeout: float = 10.0,
        heartbeat_interval: float | None = None,
        send_rate: float | None = 18.0,
        send_burst: int = 30,
        connect_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise ValueError("roomcast needs at least one URL")
        if isinstance(token, str) and not token:
            # what a provider returning "" gets too (_fetch_token): never a connection
            raise ValueError("roomcast got an empty token")
        self._urls = [_websocket_url(u) for u in urls]
        self._url_index = 0
        self._token_provider = token
        self._backoff = Backoff(backoff_base, backoff_cap, restart_jitter, rng)
        self._request_timeout = request_timeout
        self._open_timeout = open_timeout
        self._heartbeat_override = heartbeat_interval
        # Defaults sit under the server's 20/s, burst 40 (WS_RATE_LIMIT/BURST).
        self._pacer = Pacer(send_rate, send_burst) if send_rate else None
        self._connect_kwargs = dict(connect_kwargs or {})

        self._state = ConnectionState.IDLE
        self._rooms = RoomTracker()
        self._book = RequestBook()
        self._dispatcher = Dispatcher()
        self._seq = itertools.count(1)
        # Replies to the client's own frames (rejoins, heartbeats), handled inline
        # by the reader so room state changes in frame order.
        self._internal: dict[str, Callable[[Frame], None]] = {}
        self._ws: ClientConnection | None = None
        self._drop_reason: str | None = None
        self._ever_connected = False
        self._closing = False
        self._stop = asyncio.Event()
        self._open = asyncio.Event()
        self._closed = asyncio.Event()
        self._final: _Outcome | None = None
        self._supervisor: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def url(self) -> str:
        """The URL the current (or next) connection attempt uses."""
        return self._urls[self._url_index]

    @property
    def rooms(self) -> list[str]:
        """Rooms the client is in or will rejoin on reconnect."""
        return self._rooms.rooms

    def connect(self) -> None:
        """Start connecting in the background (idempotent); see wait_connected()."""
        if self._supervisor is None and self._state is ConnectionState.IDLE:
            self._state = ConnectionState.CONNECTING
            self._supervisor = asyncio.create_task(self._run(), name="roomcast-client")

    async def wait_connected(self) -> None:
        """Wait until connected with rooms rejoined; ClientClosedError if it never will be.

        Bound it with `asyncio.timeout(...)`: the client retries forever otherwise.
        """
        self.connect()
        open_wait = asyncio.ensure_future(self._open.wait())
        closed_wait = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({open_wait, closed_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            open_wait.cancel()
            closed_wait.cancel()
        if not self._open.is_set():
            raise self._closed_error()

    async def close(self) -> None:
        """Close for good; unanswered requests fail with ClientClosedError(1000)."""
        if self._state is ConnectionState.CLOSED:
            return
        self._closing = True
        self._stop.set()
        if self._supervisor is None:
            await self._finish(_Outcome(1000, "client closed"))
            return
        ws = self._ws
        if ws is not None:
            await ws.close(1000, "client closed")
        await asyncio.shield(self._supervisor)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def __aenter__(self) -> RoomcastClient:
        self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- events --------------------------------------------------------------

    def events(self) -> EventStream:
        """An async iterator of every event from now on; ends when the client closes."""
        return self._dispatcher.stream()

    @overload
    def on(self, event_type: type[E], callback: Callback[E]) -> Callable[[], None]: ...

    @overload
    def on(self, event_type: str, callback: Callback[ClientEvent]) -> Callable[[], None]: ...

    def on(self, event_type: Any, callback: Any) -> Callable[[], None]:
        """Register a sync or async callback for an event class, a `type` string or "*"."""
        return self._dispatcher.on(event_type, callback)

    # -- requests ------------------------------------------------------------

    def join(
        self, room: str, since: str | None = None, *, timeout: float | None = None
    ) -> Request[Joined]:
        """Join `room` (and rejoin it after every reconnect until left).

        `since` replays the room's events after that id; without it the client
        resumes from what it has seen, if anything.
        """
        self._rooms.want(room, since)
        return self._submit("join_room", room, None, parse_joined, timeout)

    def leave(self, room: str, *, timeout: float | None = None) -> Request[None]:
        self._rooms.forget(room)  # at once: a reconnect before the reply must not rejoin
        return self._submit("leave_room", room, None, parse_nothing, timeout)

    def send_message(
        self, room: str, content: str, *, key: str | None = None, timeout: float | None = None
    ) -> Request[str]:
        """Send a chat message; the reply is its idempotency key from the server's `ack`.

        Every message carries a key (a fresh one unless `key` is given). A request
        resent after a reconnect keeps it, so the server publishes the message once."""
        data = {"content": content, "key": key or uuid.uuid4().hex}
        return self._submit("send_message", room, data, parse_ack_key, timeout)

    def presence(self, room: str, *, timeout: float | None = None) -> Request[list[PresenceUser]]:
        return self._submit("presence", room, None, parse_presence, timeout)

    def ping(self, *, timeout: float | None = None) -> Request[None]:
        return self._submit("ping", None, None, parse_nothing, timeout)

    def refresh(self, token: str, *, timeout: float | None = None) -> Request[None]:
        """Give the server a new token before the current one expires."""
        if isinstance(self._token_provider, str):
            # A fixed token would be expired by the next reconnect; use the new one.
            self._token_provider = token
        return self._submit("refresh", None, {"token": token}, parse_nothing, timeout)

    def request(
        self,
        kind: str,
        room: str | None = None,
        data: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Request[Frame]:
        """Any other request; the reply is the raw frame."""
        return self._submit(kind, room, data, parse_raw, timeout)

    def _submit(
        self,
        kind: str,
        room: str | None,
        data: dict[str, Any] | None,
        parse: Callable[[Frame], T],
        timeout: float | None,
    ) -> Request[T]:
        if self._state is ConnectionState.CLOSED or self._closing:
            raise self._closed_error()
        request = Request(
            next(self._seq),
            kind,
            room,
            data,
            parse,
            timeout if timeout is not None else self._request_timeout,
        )
        self._book.submit(request)
        return request

    def _closed_error(self) -> ClientClosedError:
        final = self._final or _Outcome(1000, "client closed")
        return ClientClosedError(final.code, final.reason)

    # -- connection loop -----------------------------------------------------

    async def _run(self) -> None:
        outcome = _Outcome(1000, "client closed")
        token: str | None = None
        try:
            while not self._closing:
                if token is None:
                    token = await self._fetch_token()
                if token is None:  # provider failed: count it as a failed attempt
                    if not await self._pause(self._backoff.next_delay()):
                        break
                    continue
                outcome = await self._session(token)
                if self._closing:
                    outcome = _Outcome(1000, "client closed")
                    self._emit(Disconnected(outcome.code, outcome.reason, False))
                    break
                used, token = token, None
                self._next_url()
                if outcome.code in AUTH_CLOSE_CODES:
                    # Only a different token can change the answer.
                    token = await self._fetch_token() if callable(self._token_provider) else None
                    if token is None or token == used:
                        self._emit(Disconnected(outcome.code, outcome.reason, False))
                        break
                    delay = self._backoff.next_delay()
                elif outcome.code in RESTART_CLOSE_CODES:
                    delay = self._backoff.restart_delay()
                else:
                    delay = self._backoff.next_delay()
                self._emit(Disconnected(outcome.code, outcome.reason, True))
                if not await self._pause(delay):
                    outcome = _Outcome(1000, "client closed")
                    break
        finally:
            await self._finish(outcome)

    def _next_url(self) -> None:
        """Fail over: the next attempt goes to the next URL (a no-op with one URL)."""
        self._url_index = (self._url_index + 1) % len(self._urls)

    async def _pause(self, delay: float) -> bool:
        """Sleep before retrying; False if close() was called meanwhile."""
        try:
            await asyncio.wait_for(self._stop.wait(), delay)
        except TimeoutError:
            return True
        return False

    async def _fetch_token(self) -> str | None:
        provider = self._token_provider
        if isinstance(provider, str):
            return provider
        try:
            token = provider()
            if inspect.isawaitable(token):
                token = await token
        except Exception:
            logger.warning("roomcast token provider failed", exc_info=True)
            return None
        return token if isinstance(token, str) and token else None

    async def _finish(self, outcome: _Outcome) -> None:
        self._state = ConnectionState.CLOSED
        self._final = outcome
        self._open.clear()
        self._book.fail_all(self._closed_error())
        self._closed.set()
        await self._dispatcher.end()

    async def _session(self, token: str) -> _Outcome:
        """One connection from handshake to close."""
        self._state = ConnectionState.CONNECTING
        self._drop_reason = None
        try:
            ws = await connect(
                self._url_with_token(token), open_timeout=self._open_timeout, **self._connect_kwargs
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            # A proxy may refuse the upgrade with HTTP instead of a close code.
            code = {401: 4401, 403: 4403, 429: 4429}.get(status, ABNORMAL_CLOSE)
            return _Outcome(code, f"HTTP {status}")
        except (OSError, WebSocketException, TimeoutError) as exc:
            # Some handshake errors quote the URL, and the URL holds the token.
            reason = f"connect failed: {exc!r}".replace(token, "***")
            return _Outcome(ABNORMAL_CLOSE, reason)
        self._ws = ws
        try:
            if self._closing:
                await ws.close(1000, "client closed")
                return _Outcome(1000, "client closed")
            return await self._serve(ws)
        finally:
            self._ws = None
            self._open.clear()
            self._internal.clear()
            self._rooms.connection_lost()
            self._book.requeue_in_flight()
            if not self._closing:
                self._state = ConnectionState.CONNECTING
            ws.transport.abort()  # no-op after a clean close; frees a hung socket

    async def _serve(self, ws: ClientConnection) -> _Outcome:
        try:
            hello = _decode(await asyncio.wait_for(ws.recv(), self._open_timeout))
        except TimeoutError:
            self._abort(ws, "no connected frame")
            return _Outcome(ABNORMAL_CLOSE, "no connected frame")
        except ConnectionClosed:
            return self._closed_outcome(ws)
        if hello is None or hello.get("type") != "connected":
            await ws.close(1002, "expected connected")
            return _Outcome(1002, "expected connected frame")

        self._state = ConnectionState.RESUMING
        connected = self._on_connected(hello)
        helpers = [
            asyncio.create_task(self._resume_then_write(ws)),
            asyncio.create_task(self._heartbeat(ws, connected.heartbeat_interval)),
        ]
        try:
            await self._read(ws)
        finally:
            for task in helpers:
                task.cancel()
            for result in await asyncio.gather(*helpers, return_exceptions=True):
                # ConnectionClosed in a helper is the reader's news to report.
                if isinstance(result, Exception) and not isinstance(result, ConnectionClosed):
                    logger.error("roomcast client task failed", exc_info=result)
        return self._closed_outcome(ws)

    def _closed_outcome(self, ws: ClientConnection) -> _Outcome:
        if self._drop_reason is not None:
            return _Outcome(ABNORMAL_CLOSE, self._drop_reason)
        return _Outcome(ws.close_code or ABNORMAL_CLOSE, ws.close_reason or "")

    def _abort(self, ws: ClientConnection, reason: str) -> None:
        """Treat the connection as dead now (no close handshake with a dead peer)."""
        logger.info("roomcast connection dropped: %s", reason)
        self._drop_reason = reason
        ws.transport.abort()

    def _on_connected(self, hello: Frame) -> Connected:
        data = frame_data(hello)
        rooms = tuple(r for r in data.get("rooms", ()) if isinstance(r, str))
        interval = data.get("heartbeat_interval")
        if self._heartbeat_override is not None:
            heartbeat = self._heartbeat_override
        elif isinstance(interval, int | float) and interval > 0:
            heartbeat = float(interval)
        else:
            heartbeat = DEFAULT_HEARTBEAT
        for room in rooms:
            self._rooms.auto_joined(room)
        user_id = data.get("user_id")
        username = data.get("username")
        connection_id = data.get("connection_id")
        event = Connected(
            user_id=user_id if isinstance(user_id, int) else None,
            username=username if isinstance(username, str) else None,
            connection_id=connection_id if isinstance(connection_id, str) else None,
            heartbeat_interval=heartbeat,
            rooms=rooms,
            reconnect=self._ever_connected,
        )
        self._ever_connected = True
        self._emit(event)
        return event

    async def _resume_then_write(self, ws: ClientConnection) -> None:
        if not await self._rejoin(ws):
            return
        # Only a connection that got its rooms back ends the run of failures: one that
        # keeps failing its rejoins must not retry at the first (shortest) delay forever.
        self._backoff.reset()
        self._state = ConnectionState.OPEN
        self._open.set()
        while True:
            request = await self._book.next_to_send()
            frame = request.frame()
            if request.kind == "join_room" and request.room is not None:
                # Computed at send time: events seen since the call move the resume point.
                since = self._rooms.resume_point(request.room)
                if since is not None:
                    frame.setdefault("data", {})["since"] = since
            self._book.mark_sent(request)
            await self._send(ws, frame)

    async def _rejoin(self, ws: ClientConnection) -> bool:
        """Join every room again from its resume point, and wait for the answers.

        Rooms with a join request still queued are left to that request, so a
        room is never joined twice in a row. Also joins the server's own rooms
        (user:<id>) once, to learn the `last_id` to resume them from.
        False if the server did not answer in time, or failed a rejoin with an
        error that is not a refusal (the connection is dropped and retried).
        """
        queued = self._book.pending_join_rooms()
        waiters: list[asyncio.Future[bool]] = []
        for room in self._rooms.rooms:
            if room in queued:
                continue
            since = self._rooms.resume_point(room)
            frame: Frame = {"type": "join_room", "room": room, "ref": f"rejoin-{next(self._seq)}"}
            if since is not None:
                frame["data"] = {"since": since}
            waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            self._internal[frame["ref"]] = self._rejoin_handler(room, waiter)
            waiters.append(waiter)
            await self._send(ws, frame)
        if not waiters:
            return True
        try:
            answers = await asyncio.wait_for(asyncio.gather(*waiters), self._request_timeout)
        except TimeoutError:
            self._abort(ws, "rejoin timed out")
            return False
        if not all(answers):
            self._abort(ws, "rejoin failed")
            return False
        return True

    def _rejoin_handler(self, room: str, waiter: asyncio.Future[bool]) -> Callable[[Frame], None]:
        def handle(frame: Frame) -> None:
            rejoined = True
            if frame.get("type") == "error":
                code, message = parse_error(frame)
                self._emit(ServerError(code, message, room))
                if code in JOIN_REFUSAL_CODES:
                    # Refused now (e.g. access revoked while offline): stop rejoining it.
                    self._rooms.forget(room)
                    self._emit(RoomLeft(room, "rejoin_failed"))
                else:
                    # The server failed (4500): keep the room and its resume point;
                    # _rejoin drops the connection and the next one asks again.
                    rejoined = False
            else:
                self._on_joined(room, frame)
            if not waiter.done():
                waiter.set_result(rejoined)

        return handle

    def _on_joined(self, room: str, frame: Frame) -> None:
        joined = parse_joined(frame)
        self._rooms.joined(room, joined.last_id, joined.recovered)
        if joined.recovered is True:
            self._emit(Recovered(room))
        elif joined.recovered is False:
            self._emit(NotRecovered(room, joined.last_id))

    async def _heartbeat(self, ws: ClientConnection, interval: float) -> None:
        """Ping every interval; no pong within the next interval means a dead link."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            pong: asyncio.Future[None] = loop.create_future()
            ref = f"hb-{next(self._seq)}"
            self._internal[ref] = _completer(pong)
            try:
                await self._send(ws, {"type": "ping", "ref": ref})
                await asyncio.wait_for(pong, interval)
            except TimeoutError:
                self._abort(ws, "heartbeat timeout")
                return
            finally:
                self._internal.pop(ref, None)

    async def _send(self, ws: ClientConnection, frame: Frame) -> None:
        if self._pacer is not None:
            await self._pacer.acquire()
        # Text frame: the server answers binary frames with error 4400.
        await ws.send(orjson.dumps(frame).decode())

    async def _read(self, ws: ClientConnection) -> None:
        while True:
            try:
                raw = await ws.recv()
            except ConnectionClosed:
                return
            frame = _decode(raw)
            if frame is None:
                logger.warning("roomcast: ignoring a frame that is not a JSON object")
                continue
            self._handle(frame)

    # -- incoming frames -----------------------------------------------------

    def _handle(self, frame: Frame) -> None:
        kind = frame.get("type")
        ref = frame.get("ref")
        if isinstance(ref, str | int):
            handler = self._internal.pop(str(ref), None)
            if handler is not None:
                handler(frame)
                return
            request = self._book.pop_reply(ref)
            if request is not None:
                self._settle(request, frame)
                return
        room = frame_room(frame)
        if kind == "error":
            code, message = parse_error(frame)
            self._emit(ServerError(code, message, room))
        elif kind == "resync_required" and room is not None:
            self._emit(ResyncRequired(room))
        elif kind == "room_left" and room is not None and "id" not in frame:
            request = self._book.pop_oldest("leave_room", room)
            if request is not None:
                self._settle(request, frame)
            else:  # the server removed us (e.g. access revoked): never rejoin
                self._rooms.forget(room)
                self._emit(RoomLeft(room, _reason(frame)))
        elif isinstance(kind, str) and room is not None and isinstance(frame.get("id"), str):
            self._on_room_event(kind, room, frame)
        elif isinstance(kind, str) and kind in _REPLY_TO_REQUEST:
            request = self._book.pop_oldest(_REPLY_TO_REQUEST[kind], room)
            if request is not None:
                self._settle(request, frame)
            else:
                self._emit(ServerMessage(kind, room, frame_data(frame)))
        elif isinstance(kind, str):
            self._emit(ServerMessage(kind, room, frame_data(frame)))

    def _on_room_event(self, kind: str, room: str, frame: Frame) -> None:
        event_id: str = frame["id"]
        if not self._rooms.accept(room, event_id):
            logger.debug("roomcast: dropped duplicate %s in %s", event_id, room)
            return
        timestamp = frame.get("timestamp")
        self._emit(
            RoomEvent(
                type=kind,
                room=room,
                data=frame_data(frame),
                sender=frame.get("sender"),
                timestamp=timestamp if isinstance(timestamp, str) else None,
                id=event_id,
            )
        )

    def _settle(self, request: Request[Any], frame: Frame) -> None:
        room = request.room
        if frame.get("type") == "error":
            code, message = parse_error(frame)
            if request.kind == "join_room" and room is not None:
                self._rooms.join_failed(room)
            request.fail(RoomcastError(code, message))
            return
        if request.kind == "join_room" and room is not None:
            self._on_joined(room, frame)
        elif request.kind == "leave_room" and room is not None:
            self._rooms.forget(room)
            self._emit(RoomLeft(room, _reason(frame)))
        request.resolve(frame)

    def _emit(self, event: ClientEvent) -> None:
        self._dispatcher.emit(event)

    def _url_with_token(self, token: str) -> str:
        parts = urlsplit(self.url)
        path = parts.path if parts.path not in ("", "/") else DEFAULT_PATH
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
        query.append(("token", token))
        return urlunsplit((parts.scheme, parts.netloc, path, urlencode(query), parts.fragment))


def _websocket_url(url: str) -> str:
    """Check the URL early (a bad one is a bug, not a reason to retry); http(s) maps to ws(s)."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"roomcast URL must be ws://HOST[:PORT][/path], got {url!r}")
    return urlunsplit((scheme, *parts[1:]))


def _decode(raw: str | bytes) -> Frame | None:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _reason(frame: Frame) -> str | None:
    reason = frame_data(frame).get("reason")
    return reason if isinstance(reason, str) else None


def _completer(future: asyncio.Future[None]) -> Callable[[Frame], None]:
    def complete(_frame: Frame) -> None:
        if not future.done():
            future.set_result(None)

    return complete
