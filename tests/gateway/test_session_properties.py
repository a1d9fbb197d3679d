"""The sans-I/O core under arbitrary input: `Session.receive`, `parse_json` and
`Room.parse`, by property (hypothesis) and by example, with an injected clock."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.close_codes import CloseCode
from gateway.session import (
    CONSECUTIVE_LIMIT_ERRORS_BEFORE_CLOSE,
    UNRECOVERABLE_SINCE,
    Action,
    Close,
    FrameError,
    JoinRoom,
    LeaveRoom,
    PresenceQuery,
    RefreshToken,
    Reply,
    SendMessage,
    Session,
    parse_json,
)
from shared.codec import parse_stream_id
from shared.rooms import InvalidRoom, Room, RoomKind

ACTION_TYPES = (Reply, JoinRoom, LeaveRoom, SendMessage, PresenceQuery, RefreshToken, Close)
MAX_CONTENT = 50


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _session(rate: float = 1e9, burst: int = 1_000_000,
             clock: FakeClock | None = None) -> Session:
    return Session(rate_limit=rate, rate_burst=burst, max_content_length=MAX_CONTENT,
                   clock=clock or FakeClock())


def _check_actions(actions: list[Action]) -> None:
    """What the connection may be handed: known actions, reply frames that are JSON
    objects (they were encoded, so they can be sent)."""
    assert actions
    for action in actions:
        assert isinstance(action, ACTION_TYPES), action
        if isinstance(action, Reply):
            frame = json.loads(action.frame)
            assert isinstance(frame, dict) and isinstance(frame["type"], str)
            assert frame["timestamp"].endswith("Z")
            if frame["type"] == "error":
                assert frame["data"]["code"] in (4400, 4401, 4403, 4429)
                assert isinstance(frame["data"]["error"], str)


# -- strategies -------------------------------------------------------------------------

# Text that may hold lone surrogates (a JSON "\ud800" escape decodes to one). Built
# from a list: st.text() drops surrogates when its alphabet is a one_of.
any_text = st.lists(st.one_of(st.characters(), st.characters(categories=["Cs"])),
                    max_size=30).map("".join)

json_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.dictionaries(any_text, children, max_size=5)),
    max_leaves=20,
)

valid_rooms = st.builds(lambda kind, n: f"{kind.value}:{n}", st.sampled_from(list(RoomKind)),
                        st.integers(min_value=1, max_value=10**19 - 1))
room_like = st.one_of(
    valid_rooms,
    st.from_regex(r"(project|channel|task|user|foo):-?[0-9]{0,21}[a-z]?\n?", fullmatch=True),
    any_text, st.integers(), st.none(),
)
stream_ids = st.one_of(
    st.builds(lambda a, b: f"{a}-{b}", st.integers(0, 2**64 + 5), st.integers(0, 2**64 + 5)),
    st.from_regex(r"[0-9]{0,22}-?[0-9]{0,22}", fullmatch=True), any_text, json_scalars)
refs = st.one_of(st.none(), any_text, st.text(max_size=70),
                 st.integers(min_value=-(2**64), max_value=2**64), json_values)
command_types = st.one_of(
    st.sampled_from(["join_room", "leave_room", "send_message", "ping", "refresh", "presence"]),
    any_text, json_scalars)


@st.composite
def commands(draw: st.DrawFn) -> dict[str, Any]:
    """Objects shaped like commands, with every field sometimes wrong."""
    message: dict[str, Any] = {"type": draw(command_types)}
    if draw(st.booleans()):
        message["room"] = draw(room_like)
    if draw(st.booleans()):
        message["ref"] = draw(refs)
    if draw(st.booleans()):
        data = draw(st.fixed_dictionaries({}, optional={
            "since": stream_ids, "content": st.one_of(any_text, json_scalars),
            "token": st.one_of(any_text, json_scalars), "extra": json_values}))
        message["data"] = draw(st.one_of(st.just(data), json_values))
    if draw(st.integers(0, 9)) == 0:
        message[draw(any_text)] = draw(json_values)
    return message


@st.composite
def nearly_valid_commands(draw: st.DrawFn) -> dict[str, Any]:
    """A known command on a valid room whose one string field is arbitrary text: the
    paths where client strings are checked, echoed or passed on."""
    kind = draw(st.sampled_from(["join_room", "leave_room", "send_message", "ping",
                                 "refresh", "presence"]))
    message: dict[str, Any] = {"type": kind, "room": draw(valid_rooms)}
    field = draw(st.sampled_from(["ref", "content", "token", "since", "room", "type"]))
    text = draw(any_text)
    if field in ("content", "token", "since"):
        message["data"] = {field: text}
    else:
        message[field] = text
    return message


def _dumps(value: Any) -> str:
    return json.dumps(value)  # NaN/Infinity written as such, surrogates as \\ud800 escapes


# -- properties -------------------------------------------------------------------------

@settings(max_examples=400, deadline=None)
@given(st.one_of(any_text, st.binary()))
def test_receive_never_raises_on_arbitrary_frames(frame: str | bytes) -> None:
    _check_actions(_session().receive(frame))


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_receive_never_raises_on_arbitrary_json(value: Any) -> None:
    _check_actions(_session().receive(_dumps(value)))


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands())
def test_receive_never_raises_on_command_shaped_objects(message: dict[str, Any]) -> None:
    actions = _session().receive(_dumps(message))
    _check_actions(actions)
    (action,) = actions
    if isinstance(action, (JoinRoom, LeaveRoom, SendMessage, PresenceQuery)):
        assert str(action.room) == message["room"]  # only a valid room gets this far
    if isinstance(action, SendMessage):
        assert 1 <= len(action.content) <= MAX_CONTENT
        action.content.encode()  # sendable on to the worker
    if isinstance(action, JoinRoom) and action.since is not None:
        parsed = parse_stream_id(action.since)  # what may reach Redis: 64-bit ids only
        assert action.since == UNRECOVERABLE_SINCE or (
            parsed is not None and max(parsed) < 2**64), action.since
    if not isinstance(action, (Reply, Close)):
        assert action.ref == message.get("ref")


@settings(max_examples=500, deadline=None)
@given(nearly_valid_commands())
def test_receive_never_raises_on_arbitrary_strings_in_commands(message: dict[str, Any]) -> None:
    _check_actions(_session().receive(_dumps(message)))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(any_text, st.binary(max_size=20), json_values.map(_dumps)),
                min_size=1, max_size=30),
       st.lists(st.floats(min_value=0, max_value=3), min_size=1, max_size=30))
def test_receive_never_raises_under_a_rate_limit(frames: list[str | bytes],
                                                 gaps: list[float]) -> None:
    clock = FakeClock()
    session = _session(rate=2, burst=3, clock=clock)
    for i, frame in enumerate(frames):
        clock.advance(gaps[i % len(gaps)])
        _check_actions(session.receive(frame))


@settings(max_examples=400, deadline=None)
@given(any_text)
def test_parse_json_returns_or_raises_frame_error(text: str) -> None:
    try:
        parse_json(text)
    except FrameError as exc:
        assert exc.message


@settings(max_examples=300, deadline=None)
@given(st.one_of(any_text, st.integers(), st.none(), st.binary(), json_values, room_like))
def test_room_parse_raises_only_invalid_room(value: Any) -> None:
    try:
        room = Room.parse(value)
    except InvalidRoom:
        return
    assert str(room) == value  # whatever it accepts, it gives back unchanged


@settings(max_examples=300, deadline=None)
@given(st.one_of(valid_rooms, st.from_regex(r"(project|channel|task|user):[1-9][0-9]{0,18}",
                                            fullmatch=True)))
def test_room_round_trip(name: str) -> None:
    room = Room.parse(name)
    assert str(room) == name and room.id >= 1


@pytest.mark.parametrize("name", ["project:007", "project:0", "project:abc", "foo:1",
                                  "project:1\n", "project:" + "1" * 20, "PROJECT:1",
                                  "project: 1", "project:\u0661", "project:-1", ""])
def test_room_parse_refuses(name: str) -> None:
    with pytest.raises(InvalidRoom):
        Room.parse(name)


# -- rate limit with an injected clock ------------------------------------------------

def _kinds(actions: list[Action]) -> list[str]:
    out = []
    for action in actions:
        if isinstance(action, Reply):
            frame = json.loads(action.frame)
            out.append(frame["type"] if frame["type"] != "error"
                       else f"error {frame['data']['code']}")
        else:
            out.append(type(action).__name__)
    return out


PING = '{"type":"ping"}'


def test_token_bucket_burst_then_rate() -> None:
    clock = FakeClock()
    session = _session(rate=2, burst=3, clock=clock)
    assert [_kinds(session.receive(PING)) for _ in range(4)] == [
        ["pong"], ["pong"], ["pong"], ["error 4429"]]
    clock.advance(0.49)  # 0.98 token
    assert _kinds(session.receive(PING)) == ["error 4429"]
    clock.advance(0.02)  # 1.02 tokens: the refill continued through the refusal
    assert _kinds(session.receive(PING)) == ["pong"]
    clock.advance(100)  # refills up to the burst, not beyond
    assert [_kinds(session.receive(PING)) for _ in range(4)] == [
        ["pong"], ["pong"], ["pong"], ["error 4429"]]


def test_rate_limit_error_is_exact() -> None:
    session = _session(rate=1, burst=1)
    session.receive(PING)
    (action,) = session.receive('{"type":"ping","ref":"r"}')
    assert isinstance(action, Reply)
    frame = json.loads(action.frame)
    assert set(frame) == {"type", "data", "timestamp"}  # the frame is not even parsed
    assert frame["data"] == {"error": "Rate limit exceeded", "code": 4429}


def test_hundred_refusals_in_a_row_close_1008() -> None:
    session = _session(rate=1, burst=1)
    session.receive(PING)
    for _ in range(CONSECUTIVE_LIMIT_ERRORS_BEFORE_CLOSE - 1):
        assert _kinds(session.receive(PING)) == ["error 4429"]
    last = session.receive(PING)
    assert _kinds(last) == ["error 4429", "Close"]  # the 100th error, then the close
    assert last[1] == Close(CloseCode.POLICY_VIOLATION, "Rate limit exceeded")


def test_an_admitted_frame_resets_the_refusal_count() -> None:
    clock = FakeClock()
    session = _session(rate=1, burst=1, clock=clock)
    session.receive(PING)
    for _ in range(CONSECUTIVE_LIMIT_ERRORS_BEFORE_CLOSE - 1):
        session.receive(PING)
    clock.advance(1)
    assert _kinds(session.receive(PING)) == ["pong"]
    for _ in range(CONSECUTIVE_LIMIT_ERRORS_BEFORE_CLOSE - 1):
        assert _kinds(session.receive(PING)) == ["error 4429"]


# -- replies by example -----------------------------------------------------------------

def _reply(frame: str | bytes) -> dict[str, Any]:
    (action,) = _session().receive(frame)
    assert isinstance(action, Reply), action
    reply: dict[str, Any] = json.loads(action.frame)
    return reply


@pytest.mark.parametrize("ref", ["r-1", "", "x" * 64, 0, -7, 2**63, -(2**63)])
def test_ref_is_echoed_on_replies_and_errors(ref: str | int) -> None:
    assert _reply(json.dumps({"type": "ping", "ref": ref}))["ref"] == ref
    error = _reply(json.dumps({"type": "nope", "ref": ref}))
    assert error["type"] == "error" and error["ref"] == ref
    bad_room = _reply(json.dumps({"type": "join_room", "room": "x", "ref": ref}))
    assert bad_room["data"]["code"] == 4403 and bad_room["ref"] == ref


@pytest.mark.parametrize("ref", ["x" * 65, 1.5, True, {"a": 1}, [1], 2**63 + 1])
def test_invalid_ref_is_refused_and_not_echoed(ref: Any) -> None:
    error = _reply(json.dumps({"type": "ping", "ref": ref}))
    assert error["data"]["code"] == 4400 and "'ref'" in error["data"]["error"]
    assert "ref" not in error


BAD_REQUESTS: list[tuple[str, str | bytes, str]] = [
    ("binary", b'{"type":"ping"}', "binary"),
    ("empty", "", "invalid JSON"),
    ("not-json", "{", "invalid JSON"),
    ("array", "[]", "JSON object"),
    ("scalar", "1", "JSON object"),
    ("nan", '{"type":"ping","ref":NaN}', "NaN"),
    ("infinity", '{"type":"ping","data":{"a":Infinity}}', "Infinity"),
    ("duplicate-key", '{"type":"ping","type":"ping"}', "duplicate key"),
    ("deep", '{"type":"ping","data":' + "[" * 10000 + "]" * 10000 + "}", "nested"),
    ("huge-int", '{"type":"ping","ref":' + "1" * 5000 + "}", "invalid JSON"),
    ("unknown-type", '{"type":"drop_tables"}', "unknown message type"),
    ("type-missing", "{}", "'type'"),
    ("type-number", '{"type":1}', "'type'"),
    ("unknown-field", '{"type":"ping","x":1}', "unknown field"),
    ("data-not-object", '{"type":"ping","data":"x"}', "'data'"),
    ("join-extra-data", '{"type":"join_room","room":"task:1","data":{"x":1}}', "unknown field"),
    ("join-extra-data-surrogate", '{"type":"join_room","room":"task:1","data":{"\\ud800":1}}',
     "unknown field"),
    ("since-number", '{"type":"join_room","room":"task:1","data":{"since":1}}', "since"),
    ("content-missing", '{"type":"send_message","room":"task:1"}', "content"),
    ("content-empty", '{"type":"send_message","room":"task:1","data":{"content":""}}',
     "content"),
    ("content-long", '{"type":"send_message","room":"task:1","data":{"content":"'
     + "x" * (MAX_CONTENT + 1) + '"}}', "content"),
    ("content-surrogate", '{"type":"send_message","room":"task:1","data":{"content":"\\ud800"}}',
     "content"),
    ("key-empty", '{"type":"send_message","room":"task:1","data":{"content":"x","key":""}}',
     "data.key"),
    ("key-too-long", '{"type":"send_message","room":"task:1","data":{"content":"x","key":"'
     + "k" * 65 + '"}}', "data.key"),
    ("key-bad-alphabet",
     '{"type":"send_message","room":"task:1","data":{"content":"x","key":"a b"}}', "data.key"),
    ("key-number", '{"type":"send_message","room":"task:1","data":{"content":"x","key":7}}',
     "data.key"),
    ("token-missing", '{"type":"refresh"}', "token"),
    ("token-number", '{"type":"refresh","data":{"token":1}}', "token"),
    ("token-surrogate", '{"type":"refresh","data":{"token":"a\\udc00"}}', "token"),
    ("ref-surrogate", '{"type":"ping","ref":"\\ud800"}', "'ref'"),
]


@pytest.mark.parametrize(("frame", "hint"), [(f, h) for _, f, h in BAD_REQUESTS],
                         ids=[i for i, _, _ in BAD_REQUESTS])
def test_each_bad_request_is_a_4400(frame: str | bytes, hint: str) -> None:
    reply = _reply(frame)
    assert reply["type"] == "error" and reply["data"]["code"] == 4400, reply
    assert hint in reply["data"]["error"], reply


@pytest.mark.parametrize("room", ["project:007", "foo:1", "project:0", 7, None, ["task:1"]])
def test_invalid_room_format(room: Any) -> None:
    reply = _reply(json.dumps({"type": "presence", "room": room, "ref": 5}))
    assert reply["data"] == {"error": "Invalid room format", "code": 4403}
    assert reply["ref"] == 5 and "room" not in reply


def test_commands_become_actions() -> None:
    session = _session()
    assert session.receive('{"type":"join_room","room":"project:12","ref":1,'
                           '"data":{"since":"1700000000000-3"}}') == [
        JoinRoom(Room(RoomKind.PROJECT, 12), "1700000000000-3", 1)]
    assert session.receive('{"type":"join_room","room":"user:3","data":null}') == [
        JoinRoom(Room(RoomKind.USER, 3), None, None)]
    assert session.receive('{"type":"leave_room","room":"task:4","ref":"a"}') == [
        LeaveRoom(Room(RoomKind.TASK, 4), "a")]
    content = "é" * MAX_CONTENT
    assert session.receive(json.dumps({"type": "send_message", "room": "channel:9",
                                       "data": {"content": content}})) == [
        SendMessage(Room(RoomKind.CHANNEL, 9), content, None)]
    key = "k" * 60 + "_.:-"
    assert session.receive(json.dumps({"type": "send_message", "room": "channel:9",
                                       "data": {"content": "hi", "key": key}})) == [
        SendMessage(Room(RoomKind.CHANNEL, 9), "hi", None, key)]
    assert session.receive('{"type":"presence","room":"channel:9","ref":2}') == [
        PresenceQuery(Room(RoomKind.CHANNEL, 9), 2)]
    assert session.receive('{"type":"refresh","data":{"token":"t.t.t"},"ref":3}') == [
        RefreshToken("t.t.t", 3)]
    pong = _reply('{"type":"ping","ref":4}')
    assert pong["type"] == "pong" and pong["ref"] == 4
    assert set(pong) == {"type", "ref", "timestamp"}


@pytest.mark.parametrize("since", [
    "x-1", "1-", "-1", "abc", "", "1-2-3", " 1-0", "1-0\n", "1-" + "9" * 20,
    "18446744073709551616-0", "0-18446744073709551616", "1" * 21 + "-0",
    "\u0661-0", "1-\u0660", "\uff11-0", "\ud800-0"])
def test_a_since_that_is_no_stream_id_joins_unrecovered(since: str) -> None:
    """Still a join (answered `recovered: false`), but the text never reaches Redis:
    only ASCII digits within 64 bits pass."""
    (action,) = _session().receive(json.dumps({"type": "join_room", "room": "task:1",
                                               "data": {"since": since}}))
    assert action == JoinRoom(Room(RoomKind.TASK, 1), UNRECOVERABLE_SINCE, None)
    assert parse_stream_id(UNRECOVERABLE_SINCE) is None


@pytest.mark.parametrize("since", ["0-0", "1-0", "18446744073709551615-18446744073709551615",
                                   "1700000000000-12"])
def test_a_stream_id_since_is_passed_on(since: str) -> None:
    (action,) = _session().receive(json.dumps({"type": "join_room", "room": "task:1",
                                               "data": {"since": since}}))
    assert action == JoinRoom(Room(RoomKind.TASK, 1), since, None)
