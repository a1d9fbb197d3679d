"""Hostile input over real sockets against real gateway processes, on both engines.

One table of cases, each one hostile handshake or frame sequence and the exact
reaction it must get (close code and reason, or error code, message and `ref`,
after which the connection must still answer a ping). Through the whole run a
bystander on each gateway (two on Redis, one on memory) sits in a room while
events are published into it; the last test checks they received every one, once, in the same
stream order, and that no gateway logged an error, a traceback or any token.

Limits are small (3 rooms, 64 KiB frames, 50-character messages) and the rate
limit is 0.5 frame/s with a burst of 10, so a connection owns a deterministic
budget of 10 frames: every case stays within it except the rate-limit cases,
which exhaust it on purpose.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from shared.codec import parse_stream_id
from tests.support.engine_stack import EngineStack, EngineStacks
from tests.support.jwt_forge import claims, forge, unsigned
from tests.support.stack import JWT_SECRET
from tests.support.tokens import make_token
from tests.support.ws import Frame, WsClient
from workers.api import Backend

pytestmark = pytest.mark.asyncio(loop_scope="module")

ALLOWED_ORIGIN = "https://app.example.com"
MAX_ROOMS = 3
MAX_SIZE = 65536
MAX_CONTENT = 50
BURST = 10
LIMITS = {
    "ACCESS_MODE": "open",  # rooms need no grant here: test_access.py covers the ACL
    "WS_MAX_ROOMS_PER_CONNECTION": str(MAX_ROOMS),
    "WS_MESSAGE_MAX_SIZE": str(MAX_SIZE),
    "WS_MAX_CONTENT_LENGTH": str(MAX_CONTENT),
    "WS_RATE_LIMIT": "0.5",
    "WS_RATE_BURST": str(BURST),
    "WS_ALLOWED_ORIGINS": ALLOWED_ORIGIN,
    "WS_MAX_CONNECTIONS_PER_USER": "5",
}
AUTH_FAILED = "Authentication failed"
HANDSHAKE_TIMEOUT = 3.0

_ids = itertools.count(70_001)
_tokens_used: list[str] = []  # every token a case presented: none may reach a log
_ran: dict[str, set[str]] = {}  # engine -> ids of the cases that ran, for the log checks


def _new_id() -> int:
    return next(_ids)


def _remember(token: str) -> str:
    if len(token) >= 16:  # shorter ones are words that may well appear in a log
        _tokens_used.append(token)
    return token


# -- the table --------------------------------------------------------------------------

TokenFactory = Callable[[int], str]
_MISSING: Any = object()


@dataclass(frozen=True)
class Closed:
    """The server closes the connection with this code (and reason, where SPEC names one)."""

    code: int
    reason: str | None = None


@dataclass(frozen=True)
class Error:
    """An `error` reply with this code; `message` exactly or `hint` as a substring; `ref`
    echoed as given (absent when _MISSING); with `names_room`, the room that was sent,
    else no room. The connection then stays."""

    code: int
    message: str | None = None
    hint: str | None = None
    ref: Any = _MISSING
    names_room: bool = False


@dataclass(frozen=True)
class Replied:
    """A normal reply of this type (and `ref`, and these `data` items); connection stays."""

    type: str
    ref: Any = _MISSING
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpRefused:
    """Refused before the upgrade, promptly, with one of these HTTP statuses."""

    statuses: tuple[int, ...]


@dataclass(frozen=True)
class Handshake:
    id: str
    expect: Closed | Replied | HttpRefused
    token: TokenFactory | None = None  # ?token=
    query: Callable[[int], str] | None = None  # raw query string instead
    headers: Callable[[int], dict[str, str]] | None = None
    origin: str | None = None
    other_connections: int = 0  # same user's connections opened before (limit cases)


@dataclass(frozen=True)
class Frames:
    id: str
    send: Callable[[int], list[str | bytes | dict[str, Any]]]
    expect: Closed | Error | Replied
    setup: Callable[[int], list[dict[str, Any]]] = field(default=lambda uid: [])
    raw_text: bool = False  # send the bytes as a text frame, valid UTF-8 or not
    fragmented: bool = False  # send the items as the fragments of one message


@dataclass(frozen=True)
class RateLimited:
    """`frames` pings at once: the first BURST answered, the next ones refused with
    4429 "Rate limit exceeded"; with `closes`, 100 refusals in a row end in 1008."""

    id: str
    frames: int
    closes: bool


Case = Handshake | Frames | RateLimited


def _tok(**extra: Any) -> TokenFactory:
    """An HS256 token signed with the right secret, claims changed by `extra`."""
    return lambda uid: _remember(forge({"alg": "HS256", "typ": "JWT"},
                                       claims(uid, **extra), key=JWT_SECRET.encode()))


def _valid(uid: int) -> str:
    return _remember(make_token(uid, f"user{uid}"))


def _swap_header(token: str, header: dict[str, Any]) -> str:
    """The token with its header replaced, payload and signature kept."""
    _, payload, signature = token.split(".")
    return ".".join([forge(header, {}).split(".")[0], payload, signature])


def _ping(ref: Any) -> dict[str, Any]:
    return {"type": "ping", "ref": ref}


def _pad_frame(size: int) -> str:
    """A ping of exactly `size` bytes."""
    head, tail = '{"type":"ping","ref":"big","data":{"pad":"', '"}}'
    return head + "a" * (size - len(head) - len(tail)) + tail


def _nested(depth: int) -> str:
    return '{"type":"ping","ref":"deep","data":{"x":' + "[" * depth + "]" * depth + "}}"


def _rooms(*names: str) -> Callable[[int], list[dict[str, Any]]]:
    return lambda uid: [{"type": "join_room", "room": n, "ref": f"setup-{i}"}
                        for i, n in enumerate(names)]


BAD_ROOM = Error(4403, message="Invalid room format", ref="r")
BAD_FRAME = Error(4400)

CASES: list[Case] = [
    # -- handshake: every refused token is accepted, then closed 4401 ----------------------
    Handshake("valid-token-control", Replied("connected"), token=_valid),
    Handshake("missing-token", Closed(4401, AUTH_FAILED)),
    Handshake("empty-token-param", Closed(4401, AUTH_FAILED), query=lambda uid: "token="),
    Handshake("garbage-token", Closed(4401, AUTH_FAILED), token=lambda uid: "not-a-jwt"),
    Handshake("three-garbage-segments", Closed(4401, AUTH_FAILED),
              token=lambda uid: "eyJhbGciOi.eyJzdWIiOi.c2ln"),
    Handshake("alg-none", Closed(4401, AUTH_FAILED),
              token=lambda uid: _remember(unsigned(claims(uid)))),
    Handshake("alg-None-capitalised", Closed(4401, AUTH_FAILED),
              token=lambda uid: _remember(unsigned(claims(uid), alg="None"))),
    Handshake("alg-none-header-on-signed-token", Closed(4401, AUTH_FAILED),
              token=lambda uid: _remember(_swap_header(_valid(uid), {"alg": "none"}))),
    Handshake("alg-hs512-header-on-hs256-token", Closed(4401, AUTH_FAILED),
              token=lambda uid: _remember(_swap_header(_valid(uid), {"alg": "HS512"}))),
    Handshake("hs256-wrong-key", Closed(4401, AUTH_FAILED),
              token=lambda uid: _remember(make_token(uid, secret="wrong-" + "k" * 40))),
    Handshake("hs512-not-in-allowlist", Closed(4401, AUTH_FAILED),
              token=lambda uid: _remember(make_token(uid, algorithm="HS512"))),
    Handshake("expired", Closed(4401, AUTH_FAILED), token=_tok(ttl=-3600)),
    Handshake("missing-exp", Closed(4401, AUTH_FAILED), token=_tok(exp=None)),
    Handshake("exp-as-string", Closed(4401, AUTH_FAILED), token=_tok(exp="9999999999")),
    Handshake("exp-absurdly-far", Closed(4401, AUTH_FAILED), token=_tok(exp=10**300)),
    Handshake("nbf-in-an-hour", Closed(4401, AUTH_FAILED),
              token=_tok(nbf=int(time.time()) + 3600)),
    Handshake("missing-sub", Closed(4401, AUTH_FAILED), token=_tok(sub=None)),
    Handshake("non-numeric-sub", Closed(4401, AUTH_FAILED), token=_tok(sub="alice")),
    Handshake("integer-sub", Closed(4401, AUTH_FAILED), token=lambda uid: _tok(sub=uid)(uid)),
    Handshake("sub-zero", Closed(4401, AUTH_FAILED), token=_tok(sub="0")),
    Handshake("sub-leading-zero", Closed(4401, AUTH_FAILED),
              token=lambda uid: _tok(sub=f"0{uid}")(uid)),
    Handshake("sub-negative", Closed(4401, AUTH_FAILED),
              token=lambda uid: _tok(sub=f"-{uid}")(uid)),
    Handshake("sub-20-digits", Closed(4401, AUTH_FAILED), token=_tok(sub="1" * 20)),
    Handshake("type-refresh", Closed(4401, AUTH_FAILED), token=_tok(type="refresh")),
    Handshake("payload-not-an-object", Closed(4401, AUTH_FAILED),
              token=lambda uid: _remember(forge({"alg": "HS256"}, "[1,2]",
                                                key=JWT_SECRET.encode()))),
    Handshake("payload-5000-digit-exp", Closed(4401, AUTH_FAILED),
              token=lambda uid: _remember(forge(
                  {"alg": "HS256"}, f'{{"sub":"{uid}","exp":{"9" * 5000}}}',
                  key=JWT_SECRET.encode()))),
    # A token over 8 KiB is refused before it is decoded, with the usual 4401; a
    # request line or header over 16 KiB never reaches the app: the HTTP parser
    # refuses it (414 / 431).
    Handshake("token-over-8kib-in-query", Closed(4401, AUTH_FAILED),
              token=lambda uid: _remember(make_token(uid, "x" * 9000))),
    Handshake("token-over-8kib-in-header", Closed(4401, AUTH_FAILED),
              headers=lambda uid: {"Authorization": "Bearer "
                                   + _remember(make_token(uid, "x" * 9000))}),
    Handshake("request-line-over-16kib", HttpRefused((414,)),
              token=lambda uid: _remember(make_token(uid, "x" * 20000))),
    Handshake("header-over-16kib", HttpRefused((431,)),
              headers=lambda uid: {"Authorization": "Bearer "
                                   + _remember(make_token(uid, "x" * 20000))}),
    Handshake("repeated-token-param", Closed(4401, AUTH_FAILED),
              query=lambda uid: f"token={_valid(uid)}&token={_valid(uid)}"),
    Handshake("basic-auth-header", Closed(4401, AUTH_FAILED),
              headers=lambda uid: {"Authorization": "Basic dXNlcjpwYXNz"}),
    Handshake("bad-origin", Closed(4403), token=_valid, origin="https://evil.example.com"),
    Handshake("null-origin", Closed(4403), token=_valid, origin="null"),
    Handshake("allowed-origin-control", Replied("connected"), token=_valid,
              origin=ALLOWED_ORIGIN),
    Handshake("sixth-connection-of-a-user", Closed(4429), token=_valid, other_connections=5),
    # -- frames: bad input gets an error and the connection stays --------------------------
    Frames("binary-frame", lambda uid: [b'{"type":"ping"}'], BAD_FRAME),
    Frames("empty-binary-frame", lambda uid: [b""], BAD_FRAME),
    Frames("empty-text-frame", lambda uid: [""], Error(4400, hint="invalid JSON")),
    Frames("invalid-json", lambda uid: ['{"type": "ping",'], Error(4400, hint="invalid JSON")),
    Frames("json-array", lambda uid: ['[{"type":"ping"}]'], Error(4400, hint="JSON object")),
    Frames("json-scalar", lambda uid: ["42"], Error(4400, hint="JSON object")),
    Frames("json-string", lambda uid: ['"ping"'], Error(4400, hint="JSON object")),
    Frames("json-null", lambda uid: ["null"], Error(4400, hint="JSON object")),
    Frames("nan", lambda uid: ['{"type":"ping","ref":NaN}'], Error(4400, hint="NaN")),
    Frames("infinity", lambda uid: ['{"type":"ping","data":{"x":Infinity}}'],
           Error(4400, hint="Infinity")),
    Frames("minus-infinity", lambda uid: ['{"type":"ping","data":{"x":-Infinity}}'],
           Error(4400, hint="Infinity")),
    Frames("duplicate-keys", lambda uid: ['{"type":"ping","type":"join_room","ref":"r"}'],
           Error(4400, hint="duplicate key")),
    Frames("nesting-10000-deep", lambda uid: [_nested(10_000)],
           Error(4400, hint="nested too deeply")),
    Frames("integer-5000-digits", lambda uid: ['{"type":"ping","ref":' + "7" * 5000 + "}"],
           Error(4400, hint="invalid JSON")),
    Frames("float-overflowing-to-inf", lambda uid: ['{"type":"ping","ref":1e999}'],
           Error(4400, hint="'ref'")),
    Frames("unknown-type", lambda uid: [{"type": "sudo", "ref": "r"}],
           Error(4400, hint="unknown message type", ref="r")),
    Frames("missing-type", lambda uid: [{"ref": "r"}], Error(4400, hint="'type'", ref="r")),
    Frames("type-as-number", lambda uid: [{"type": 7, "ref": "r"}],
           Error(4400, hint="'type'", ref="r")),
    Frames("unknown-top-level-field", lambda uid: [{"type": "ping", "admin": True, "ref": "r"}],
           Error(4400, hint="unknown field", ref="r")),
    Frames("data-as-array", lambda uid: [{"type": "join_room", "room": "project:1",
                                          "data": [], "ref": "r"}],
           Error(4400, hint="'data'", ref="r")),
    Frames("unknown-data-field", lambda uid: [{"type": "join_room", "room": "project:1",
                                               "data": {"since": "0-0", "as": 1}, "ref": "r"}],
           Error(4400, hint="unknown field", ref="r")),
    Frames("since-as-number", lambda uid: [{"type": "join_room", "room": "project:1",
                                            "data": {"since": 5}, "ref": "r"}],
           Error(4400, hint="since", ref="r")),
    # a `since` that is no stream id still joins, unrecovered: the client refetches
    Frames("since-not-a-stream-id", lambda uid: [{"type": "join_room", "room": "project:1",
                                                  "data": {"since": "yesterday"}, "ref": "r"}],
           Replied("room_joined", ref="r", data={"recovered": False, "replayed": 0})),
    Frames("since-beyond-uint64", lambda uid: [{"type": "join_room", "room": "project:1",
                                                "data": {"since": "1-" + "9" * 20},
                                                "ref": "r"}],
           Replied("room_joined", ref="r", data={"recovered": False, "replayed": 0})),
    Frames("ref-65-characters", lambda uid: [_ping("r" * 65)], Error(4400, hint="'ref'")),
    Frames("ref-as-object", lambda uid: [_ping({"id": 1})], Error(4400, hint="'ref'")),
    Frames("ref-as-boolean", lambda uid: [_ping(True)], Error(4400, hint="'ref'")),
    Frames("ref-lone-surrogate", lambda uid: ['{"type":"ping","ref":"\\ud800"}'],
           Error(4400, hint="'ref'")),
    Frames("ref-64-characters-control", lambda uid: [_ping("r" * 64)],
           Replied("pong", ref="r" * 64)),
    Frames("content-empty", lambda uid: [{"type": "send_message", "room": f"project:{uid}",
                                          "data": {"content": ""}, "ref": "r"}],
           Error(4400, hint="content", ref="r")),
    Frames("content-over-limit", lambda uid: [{"type": "send_message", "room": f"project:{uid}",
                                               "data": {"content": "x" * (MAX_CONTENT + 1)},
                                               "ref": "r"}],
           Error(4400, hint="content", ref="r")),
    Frames("content-as-number", lambda uid: [{"type": "send_message", "room": f"project:{uid}",
                                              "data": {"content": 5}, "ref": "r"}],
           Error(4400, hint="content", ref="r")),
    Frames("content-lone-surrogate",
           lambda uid: ['{"type":"send_message","room":"project:' + str(uid)
                        + '","data":{"content":"\\udfff"},"ref":"r"}'],
           Error(4400, hint="content", ref="r")),
    Frames("content-at-limit-control",
           lambda uid: [{"type": "send_message", "room": f"project:{uid}",
                         "data": {"content": "é" * MAX_CONTENT}, "ref": "r"}],
           Replied("ack", ref="r"), setup=lambda uid: _rooms(f"project:{uid}")(uid)),
    Frames("room-leading-zeros", lambda uid: [{"type": "join_room", "room": "project:007",
                                               "ref": "r"}], BAD_ROOM),
    Frames("room-id-not-digits", lambda uid: [{"type": "join_room", "room": "project:abc",
                                               "ref": "r"}], BAD_ROOM),
    Frames("room-unknown-kind", lambda uid: [{"type": "join_room", "room": "foo:1",
                                              "ref": "r"}], BAD_ROOM),
    Frames("room-zero", lambda uid: [{"type": "join_room", "room": "project:0", "ref": "r"}],
           BAD_ROOM),
    Frames("room-trailing-newline", lambda uid: [{"type": "join_room", "room": "project:1\n",
                                                  "ref": "r"}], BAD_ROOM),
    Frames("room-20-digits", lambda uid: [{"type": "join_room", "room": "task:" + "1" * 20,
                                           "ref": "r"}], BAD_ROOM),
    Frames("room-as-number", lambda uid: [{"type": "join_room", "room": 1, "ref": "r"}],
           BAD_ROOM),
    Frames("room-missing", lambda uid: [{"type": "join_room", "ref": "r"}], BAD_ROOM),
    Frames("room-of-another-user", lambda uid: [{"type": "join_room", "room": f"user:{uid + 1}",
                                                 "ref": "r"}],
           Error(4403, message="Forbidden", ref="r", names_room=True)),
    Frames("send-to-room-not-joined", lambda uid: [{"type": "send_message",
                                                    "room": f"channel:{uid}",
                                                    "data": {"content": "hi"}, "ref": "r"}],
           Error(4403, message="Forbidden", ref="r", names_room=True)),
    Frames("presence-of-room-not-joined", lambda uid: [{"type": "presence",
                                                        "room": f"channel:{uid}", "ref": "r"}],
           Error(4403, message="Forbidden", ref="r", names_room=True)),
    Frames("join-beyond-room-limit",
           lambda uid: [{"type": "join_room", "room": f"task:{uid}", "ref": "r"}],
           Error(4429, ref="r", names_room=True),
           setup=lambda uid: _rooms(f"project:{uid}", f"channel:{uid}", f"task:{uid + 1}")(uid)),
    Frames("leave-room-not-joined-control", lambda uid: [{"type": "leave_room",
                                                          "room": f"project:{uid}",
                                                          "ref": "r"}],
           Replied("room_left", ref="r")),
    Frames("refresh-garbage-token", lambda uid: [{"type": "refresh", "ref": "r",
                                                  "data": {"token": "garbage"}}],
           Error(4401, message=AUTH_FAILED, ref="r")),
    Frames("refresh-token-over-8kib",
           lambda uid: [{"type": "refresh", "ref": "r",
                         "data": {"token": _remember(make_token(uid, "x" * 9000))}}],
           Error(4401, message=AUTH_FAILED, ref="r")),
    Frames("refresh-token-of-another-user",
           lambda uid: [{"type": "refresh", "ref": "r", "data": {"token": _valid(uid + 1)}}],
           Error(4401, ref="r")),
    Frames("refresh-token-as-number", lambda uid: [{"type": "refresh", "ref": "r",
                                                    "data": {"token": 12}}],
           Error(4400, hint="token", ref="r")),
    Frames("frame-at-max-size-control", lambda uid: [_pad_frame(MAX_SIZE)],
           Replied("pong", ref="big")),
    # -- frames the connection does not survive --------------------------------------------
    Frames("frame-over-max-size", lambda uid: [_pad_frame(MAX_SIZE + 1)], Closed(1009)),
    Frames("fragments-summing-over-max-size",
           lambda uid: ['{"type":"ping","data":{"pad":"' + "a" * 40_000, "b" * 40_000 + '"}}'],
           Closed(1009), fragmented=True),
    Frames("invalid-utf8-text-frame", lambda uid: [b'{"type":"ping","ref":"\xff\xfe"}'],
           Closed(1007), raw_text=True),
    Frames("truncated-utf8-text-frame", lambda uid: [b'{"type":"ping","ref":"\xe2\x82"}'],
           Closed(1007), raw_text=True),
    RateLimited("over-rate-limit", frames=BURST + 1, closes=False),
    RateLimited("rate-limit-100-in-a-row", frames=BURST + 100, closes=True),
]


# -- the stack and the bystanders -------------------------------------------------------

@pytest.fixture(scope="module")
def hostile_stack(engine_stacks_of_module: EngineStacks) -> EngineStack:
    return engine_stacks_of_module.start(**LIMITS)


@dataclass
class Bystanders:
    room: str
    clients: list[WsClient]
    backend: Backend
    published: list[int] = field(default_factory=list)

    def publish(self) -> None:
        """One more event into the bystanders' room, through the worker."""
        task_id = len(self.published) + 1
        self.backend.task_created(self.room, task_id=task_id, project_id=1,
                                  title=f"event {task_id}")
        self.published.append(task_id)

    def assert_alive(self) -> None:
        for client in self.clients:
            assert not client.closed.is_set(), (client.close_code, client.close_reason)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bystanders(hostile_stack: EngineStack) -> AsyncIterator[Bystanders]:
    backend = hostile_stack.backend
    room = f"project:{_new_id()}"
    clients = []
    for gateway in hostile_stack.gateways:
        client = await WsClient.open(gateway.url, make_token(_new_id(), "bystander"))
        await client.wait_for(lambda f: f["type"] == "connected")
        assert (await client.join(room))["type"] == "room_joined"
        clients.append(client)
    yield Bystanders(room, clients, backend)
    for client in clients:
        if not client.closed.is_set():
            await client.close()


# -- running one case -------------------------------------------------------------------

async def _connected(url: str, uid: int) -> WsClient:
    client = await WsClient.open(url, _valid(uid))
    await client.wait_for(lambda f: f["type"] == "connected")
    return client


def _reply_after(client: WsClient, start: int) -> Any:
    """The first direct reply (no stream `id`) received at index >= start."""
    return client.wait_for(lambda f: "id" not in f, start=start)


def _assert_error(frame: Frame, expect: Error, room: str | None) -> None:
    assert frame["type"] == "error", frame
    expected_keys = {"type", "data", "timestamp"}
    if expect.ref is not _MISSING:
        expected_keys.add("ref")
        assert frame["ref"] == expect.ref, frame
    if expect.names_room:
        expected_keys.add("room")
        assert frame.get("room") == room, frame
    assert set(frame) == expected_keys, frame
    assert set(frame["data"]) == {"error", "code"}, frame
    assert frame["data"]["code"] == expect.code, frame
    if expect.message is not None:
        assert frame["data"]["error"] == expect.message, frame
    if expect.hint is not None:
        assert expect.hint in frame["data"]["error"], frame


async def _assert_still_serving(client: WsClient) -> None:
    pong = await client.request("ping")
    assert pong["type"] == "pong"
    assert not client.closed.is_set()


async def _run_refused(case: Handshake, expect: HttpRefused, url: str, uid: int) -> None:
    target = f"{url}?token={case.token(uid)}" if case.token else url
    headers = case.headers(uid) if case.headers else None
    with pytest.raises(InvalidStatus) as refused:
        async with connect(target, additional_headers=headers, open_timeout=HANDSHAKE_TIMEOUT,
                           ping_interval=None):
            pass
    assert refused.value.response.status_code in expect.statuses


async def _run_handshake(case: Handshake, url: str, uid: int) -> None:
    if isinstance(case.expect, HttpRefused):
        await _run_refused(case, case.expect, url, uid)
        return
    others = []
    for _ in range(case.other_connections):
        others.append(await _connected(url, uid))
    headers = case.headers(uid) if case.headers else None
    if case.query is not None:
        client = await WsClient.open(url, query=case.query(uid), headers=headers,
                                     origin=case.origin)
    else:
        client = await WsClient.open(url, case.token(uid) if case.token else None,
                                     headers=headers, origin=case.origin)
    try:
        if isinstance(case.expect, Closed):
            code = await client.wait_closed()
            assert code == case.expect.code, (code, client.close_reason)
            if case.expect.reason is not None:
                assert client.close_reason == case.expect.reason
            assert client.frames == []  # nothing before the close: no `connected`
        else:
            first = await client.wait_for(lambda f: True)
            assert first["type"] == case.expect.type, first
            assert first["data"]["user_id"] == uid
            await _assert_still_serving(client)
    finally:
        for c in [client, *others]:
            if not c.closed.is_set():
                await c.close()


async def _run_frames(case: Frames, url: str, uid: int) -> None:
    client = await _connected(url, uid)
    try:
        for message in case.setup(uid):
            reply = await client.request(message["type"], message.get("room"))
            assert reply["type"] == "room_joined", reply
        start = len(client.frames)
        if case.fragmented:
            await client.conn.send(iter([f for f in case.send(uid) if isinstance(f, str)]))
        for item in [] if case.fragmented else case.send(uid):
            if case.raw_text:
                assert isinstance(item, bytes)
                await client.send_raw_text(item)
            else:
                await client.send(item)
        expect = case.expect
        if isinstance(expect, Closed):
            code = await client.wait_closed()
            assert code == expect.code, (code, client.close_reason)
            if expect.reason is not None:
                assert client.close_reason == expect.reason
            assert client.frames[start:] == []
            return
        reply = await _reply_after(client, start)
        if isinstance(expect, Error):
            sent = case.send(uid)[-1]
            room = sent.get("room") if isinstance(sent, dict) else None
            _assert_error(reply, expect, room if isinstance(room, str) else None)
        else:
            assert reply["type"] == expect.type, reply
            if expect.ref is not _MISSING:
                assert reply.get("ref") == expect.ref, reply
            assert expect.data.items() <= reply.get("data", {}).items(), reply
        await _assert_still_serving(client)
    finally:
        if not client.closed.is_set():
            await client.close()


async def _run_rate_limited(case: RateLimited, url: str, uid: int) -> None:
    client = await _connected(url, uid)
    try:
        start = len(client.frames)
        # Back to back: at 0.5 frame/s no token comes back within the moment this takes.
        for i in range(case.frames):
            try:
                await client.send(_ping(i))
            except ConnectionClosed:
                assert case.closes
                break
        if case.closes:
            code = await client.wait_closed()
            assert (code, client.close_reason) == (1008, "Rate limit exceeded")
        else:
            await client.wait_for(lambda f: f["type"] == "error", start=start)
        replies = client.frames[start:]
        assert [f["type"] for f in replies[:BURST]] == ["pong"] * BURST
        assert [f["ref"] for f in replies[:BURST]] == list(range(BURST))
        refused = replies[BURST:]
        assert len(refused) == case.frames - BURST  # 1, or the 100 before the close
        for frame in refused:
            assert frame["type"] == "error" and "ref" not in frame, frame
            assert frame["data"] == {"error": "Rate limit exceeded", "code": 4429}
        if not case.closes:
            # still open, still limited: the next frame is refused too, not dropped
            await client.send(_ping("again"))
            again = await client.wait_for(lambda f: True, start=start + case.frames)
            assert again["data"] == {"error": "Rate limit exceeded", "code": 4429}
            assert not client.closed.is_set()
    finally:
        if not client.closed.is_set():
            await client.close()


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
async def test_hostile_input(case: Case, hostile_stack: EngineStack,
                             bystanders: Bystanders) -> None:
    await _run_case(case, hostile_stack, bystanders)


async def _run_case(case: Case, hostile_stack: EngineStack, bystanders: Bystanders) -> None:
    index = CASES.index(case)
    url = hostile_stack.gateways[index % len(hostile_stack.gateways)].url
    uid = _new_id()
    next(_ids)  # uid + 1 stays free for cases that name "another user"
    bystanders.publish()
    if isinstance(case, Handshake):
        await _run_handshake(case, url, uid)
    elif isinstance(case, Frames):
        await _run_frames(case, url, uid)
    else:
        await _run_rate_limited(case, url, uid)
    bystanders.assert_alive()
    _ran.setdefault(hostile_stack.engine, set()).add(case.id)


async def test_out_of_range_since_on_a_room_with_history(
        hostile_stack: EngineStack, bystanders: Bystanders) -> None:
    """A `since` between the room's first and latest ids but with a sequence beyond
    64 bits: before any Redis read it must be seen as no stream id at all."""
    bystanders.publish()
    bystanders.publish()
    await bystanders.clients[0].wait_events(bystanders.room, 2, type_="task.created")
    events = bystanders.clients[0].events(bystanders.room)
    first_ms = events[0]["id"].split("-")[0]
    assert int(first_ms) < int(events[-1]["id"].split("-")[0])  # a later ms exists
    client = await _connected(hostile_stack.gateway(1).url, _new_id())
    reply = await client.join(bystanders.room, since=f"{first_ms}-{'9' * 21}")
    assert reply["type"] == "room_joined", reply
    assert reply["data"]["recovered"] is False and reply["data"]["replayed"] == 0
    await _assert_still_serving(client)
    await client.close()


# -- after the whole table --------------------------------------------------------------

def _log_records(stack: EngineStack) -> list[dict[str, Any]]:
    records = []
    for gateway in stack.all_gateways:
        for line in gateway.log_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                records.append({"level": "raw", "msg": line})
    return records


async def test_bystanders_got_every_event_and_logs_are_clean(
        hostile_stack: EngineStack, bystanders: Bystanders) -> None:
    # The log checks below need these cases; run alone (or with -k), this test runs
    # them itself, so it checks as much as after the whole table.
    handshake_refusals = [c.id for c in CASES if isinstance(c, Handshake)
                          and isinstance(c.expect, Closed) and c.expect.code == 4401]
    needed = {*handshake_refusals, "bad-origin", "null-origin", "room-of-another-user",
              "rate-limit-100-in-a-row", "frame-over-max-size", "invalid-utf8-text-frame"}
    assert needed <= {c.id for c in CASES} and len({c.id for c in CASES}) == len(CASES)
    for case in CASES:
        if case.id in needed - _ran.get(hostile_stack.engine, set()):
            await _run_case(case, hostile_stack, bystanders)
    bystanders.publish()
    expected = list(bystanders.published)
    seen = []
    for client in bystanders.clients:
        events = await client.wait_events(bystanders.room, len(expected), type_="task.created",
                                          timeout=30)
        # every event once (the worker's threads may append them in any order) ...
        assert sorted(e["data"]["task_id"] for e in events) == expected
        # ... in stream order
        ids = [parse_stream_id(e["id"]) for e in events]
        assert all(a is not None and b is not None and a < b for a, b in itertools.pairwise(ids))
        seen.append([e["id"] for e in events])
    assert all(s == seen[0] for s in seen)  # the same sequence on every gateway
    bystanders.assert_alive()

    records = _log_records(hostile_stack)
    text = "\n".join(g.log_text() for g in hostile_stack.all_gateways)
    ran = _ran.get(hostile_stack.engine, set())
    failures = [r for r in records if r.get("level") in ("error", "critical", "raw")
                or "exc" in r]
    assert failures == []
    assert "Traceback" not in text
    for token in _tokens_used:
        assert token not in text
        for part in token.split("."):
            if len(part) >= 16:  # header, payload and signature, each on its own
                assert part not in text

    def logged(msg: str) -> list[dict[str, Any]]:
        return [r for r in records if r.get("msg") == msg]

    assert needed <= ran
    failed = logged("auth failed")
    assert len(failed) >= len(handshake_refusals)
    assert all(r.get("remote", "").startswith("127.0.0.1:") and r.get("reason")
               for r in failed)
    assert {r.get("origin") for r in logged("origin denied")} >= {
        "https://evil.example.com", "null"}
    assert logged("join denied")
    assert [r["code"] for r in logged("abuse close")] == [1008]
    assert {r["code"] for r in logged("protocol close")} == {1007, 1009}
