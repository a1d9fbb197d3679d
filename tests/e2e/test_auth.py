"""JWT authentication over real sockets: HS256, RS256 and ES256 gateways, on both
engines.

Every refusal must be an accepted upgrade closed at once with 4401
`Authentication failed` (the client sees the close code, not an HTTP error),
with nothing sent before it; the token may come from the query, an
`Authorization: Bearer` header, the `bearer` subprotocol or a cookie (the
query wins); a session ends with 4401 `Token expired` at `exp` (JWT_LEEWAY does
not extend it) unless refreshed; and no token ever reaches a gateway log.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from jose import jwt

from roomcast.cli.embedded_redis import free_port
from tests.support.delivery import wait_sync
from tests.support.engine_stack import EngineStack, EngineStacks
from tests.support.gateways import start_all
from tests.support.jwt_forge import claims, ec_keypair, forge, rsa_keypair, unsigned
from tests.support.stack import JWT_SECRET, Gateway
from tests.support.ws import Frame, WsClient

ISSUER = "https://id.example.com"
AUDIENCE = "roomcast-ws"
RENAMED_COOKIE = "rc_session"
AUTH_FAILED = "Authentication failed"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

_ids = itertools.count(80_001)
_tokens_used: list[str] = []


def _new_id() -> int:
    return next(_ids)


def _remember(token: str) -> str:
    _tokens_used.append(token)
    return token


@dataclass(frozen=True)
class Family:
    """One gateway and how to sign for it: right key, another key of the same kind."""

    alg: str
    gateway: Gateway
    key: str  # the signing secret or private PEM
    other_key: str
    public_pem: str | None

    def sign(self, payload: dict[str, Any], *, key: str | None = None,
             alg: str | None = None) -> str:
        token: str = jwt.encode(payload, key or self.key, algorithm=alg or self.alg)
        return _remember(token)


@dataclass(frozen=True)
class AuthStack:
    hs: Family
    rs: Family
    es: Family
    strict: Gateway  # HS256 with JWT_ISSUER, JWT_AUDIENCE, JWT_LEEWAY=0, renamed cookie
    mixed: Gateway  # JWT_ALGORITHMS=RS256,HS256 with an RSA public key
    rs_next_key: str  # a second private key whose public half the RS gateway also holds
    stack: EngineStack

    def family(self, alg: str) -> Family:
        return {"HS256": self.hs, "RS256": self.rs, "ES256": self.es}[alg]


@pytest.fixture(scope="module")
def auth(engine_stacks_of_module: EngineStacks) -> AuthStack:
    # gateways only (on memory, one process each): nothing here goes through the queue
    stack = engine_stacks_of_module.start(gateways=0, worker=False)
    rsa_private, rsa_public = rsa_keypair()
    rsa_next_private, rsa_next_public = rsa_keypair()
    ec_private, ec_public = ec_keypair()
    hs = stack.extra_gateway("hs", {})
    strict = stack.extra_gateway("strict", {
        "JWT_ISSUER": ISSUER, "JWT_AUDIENCE": AUDIENCE, "JWT_LEEWAY": "0",
        "WS_TOKEN_COOKIE": RENAMED_COOKIE})
    rs = stack.extra_gateway("rs", {
        "JWT_SECRET": None, "JWT_ALGORITHMS": "RS256",
        # two keys, as during a rotation: the current one and the next one
        "JWT_PUBLIC_KEY": rsa_public + rsa_next_public})
    es = stack.extra_gateway("es", {
        "JWT_SECRET": None, "JWT_ALGORITHMS": "ES256", "JWT_PUBLIC_KEY": ec_public})
    mixed = stack.extra_gateway("mixed", {
        "JWT_SECRET": None, "JWT_ALGORITHMS": "RS256,HS256", "JWT_PUBLIC_KEY": rsa_public})
    start_all([hs, strict, rs, es, mixed])
    return AuthStack(
        hs=Family("HS256", hs, JWT_SECRET, "another-secret-" + "y" * 40, None),
        rs=Family("RS256", rs, rsa_private, rsa_keypair()[0], rsa_public),
        es=Family("ES256", es, ec_private, ec_keypair()[0], ec_public),
        strict=strict, mixed=mixed, rs_next_key=rsa_next_private, stack=stack)


# -- helpers ----------------------------------------------------------------------------

async def _open(url: str, token: str | None = None, **kwargs: Any) -> WsClient:
    """Open a connection; raises if the upgrade itself is refused (an HTTP status)."""
    return await WsClient.open(url, token, **kwargs)


async def _connected(url: str, token: str | None = None, **kwargs: Any) -> tuple[WsClient, Frame]:
    client = await _open(url, token, **kwargs)
    first = await client.wait_for(lambda f: True)
    assert first["type"] == "connected", first
    return client, first


async def _assert_refused(url: str, token: str | None = None, **kwargs: Any) -> WsClient:
    """The upgrade is accepted (no HTTP error), then closed 4401 with nothing before it."""
    client = await _open(url, token, **kwargs)
    code = await client.wait_closed()
    assert (code, client.close_reason) == (4401, AUTH_FAILED)
    assert client.frames == []
    return client


async def _assert_serving(client: WsClient) -> None:
    assert (await client.request("ping"))["type"] == "pong"
    assert not client.closed.is_set()


# -- a valid token ----------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES256"])
async def test_valid_token_gets_the_connected_frame(auth: AuthStack, alg: str) -> None:
    family = auth.family(alg)
    uid = _new_id()
    client, first = await _connected(family.gateway.url,
                                     family.sign(claims(uid, username="alice")))
    assert set(first) == {"type", "data", "timestamp"}
    assert TIMESTAMP.match(first["timestamp"]), first
    connection_id = first["data"]["connection_id"]
    assert isinstance(connection_id, str)
    assert connection_id.startswith(family.gateway.instance_id + ":")
    assert first["data"] == {
        "message": "Connected successfully", "user_id": uid, "username": "alice",
        "connection_id": connection_id, "heartbeat_interval": 1, "rooms": [f"user:{uid}"]}
    await _assert_serving(client)
    await client.close()


USERNAME_CLAIMS: list[tuple[str, dict[str, Any], str | None]] = [
    ("username", {"username": "alice", "preferred_username": "al"}, "alice"),
    ("preferred-username", {"preferred_username": "al"}, "al"),
    ("neither", {}, None),  # None: user-<sub>
    ("blank-username", {"username": "  ", "preferred_username": "al"}, "al"),
    ("username-not-a-string", {"username": 42, "preferred_username": "al"}, "al"),
    ("both-unusable", {"username": "", "preferred_username": ["al"]}, None),
]


@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES256"])
@pytest.mark.parametrize(("name", "extra", "expected"), USERNAME_CLAIMS,
                         ids=[c[0] for c in USERNAME_CLAIMS])
async def test_username_fallback(auth: AuthStack, alg: str, name: str,
                                 extra: dict[str, Any], expected: str | None) -> None:
    family = auth.family(alg)
    uid = _new_id()
    client, first = await _connected(family.gateway.url, family.sign(claims(uid, **extra)))
    assert first["data"]["username"] == (expected or f"user-{uid}")
    await client.close()


async def test_rs256_gateway_accepts_either_key_of_a_rotation(auth: AuthStack) -> None:
    uid = _new_id()
    for key in (auth.rs.key, auth.rs_next_key):
        client, first = await _connected(auth.rs.gateway.url,
                                         auth.rs.sign(claims(uid), key=key))
        assert first["data"]["user_id"] == uid
        await client.close()
    await _assert_refused(auth.rs.gateway.url, auth.rs.sign(claims(uid), key=auth.rs.other_key))


# -- refused tokens ---------------------------------------------------------------------

def _confusion(family: Family, uid: int) -> str:
    """HS256 keyed with the gateway's own public key PEM: the classic algorithm confusion."""
    pem = family.public_pem or auth_pem_for_hs()
    return _remember(forge({"alg": "HS256", "typ": "JWT"}, claims(uid), key=pem.encode()))


_HS_VICTIM_PEM: list[str] = []


def auth_pem_for_hs() -> str:
    """For the HS gateway: some RSA public key (there is no public key to confuse)."""
    if not _HS_VICTIM_PEM:
        _HS_VICTIM_PEM.append(rsa_keypair()[1])
    return _HS_VICTIM_PEM[0]


def _outside_allowlist(family: Family, uid: int) -> str:
    """Signed with the right key but an algorithm the gateway does not list: HS384 or
    RS512 for real; for ES256 (a P-256 key signs nothing else) an ES384 header."""
    if family.alg == "ES256":
        _, payload, signature = family.sign(claims(uid)).split(".")
        swapped = forge({"alg": "ES384", "typ": "JWT"}, {}).split(".")[0]
        return _remember(f"{swapped}.{payload}.{signature}")
    return family.sign(claims(uid), alg={"HS256": "HS384", "RS256": "RS512"}[family.alg])


REFUSALS: dict[str, Callable[[Family, int], str]] = {
    "alg-none": lambda f, uid: _remember(unsigned(claims(uid))),
    "wrong-key": lambda f, uid: f.sign(claims(uid), key=f.other_key),
    "hs256-keyed-with-public-pem": _confusion,
    "alg-outside-allowlist": lambda f, uid: _outside_allowlist(f, uid),
    "expired": lambda f, uid: f.sign(claims(uid, ttl=-120)),
    "expired-within-leeway": lambda f, uid: f.sign(claims(uid, ttl=-3)),
    "nbf-in-a-minute": lambda f, uid: f.sign(claims(uid, nbf=int(time.time()) + 60)),
    "missing-exp": lambda f, uid: f.sign(claims(uid, exp=None)),
    "missing-sub": lambda f, uid: f.sign(claims(uid, sub=None)),
    "sub-with-leading-zero": lambda f, uid: f.sign(claims(uid, sub=f"0{uid}")),
    "type-refresh": lambda f, uid: f.sign(claims(uid, type="refresh")),
    "signature-of-another-token": lambda f, uid: _remember(
        f.sign(claims(uid + 1)).rsplit(".", 1)[0] + "."
        + f.sign(claims(uid)).rsplit(".", 1)[1]),
}


@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES256"])
@pytest.mark.parametrize("refusal", list(REFUSALS))
async def test_refused_token_closes_4401_after_the_upgrade(auth: AuthStack, alg: str,
                                                           refusal: str) -> None:
    family = auth.family(alg)
    uid = _new_id()
    await _assert_refused(family.gateway.url, REFUSALS[refusal](family, uid))


@pytest.mark.parametrize(("signer", "gateway"), [("RS256", "ES256"), ("ES256", "RS256"),
                                                 ("HS256", "RS256"), ("RS256", "HS256")])
async def test_token_of_another_family_is_refused(auth: AuthStack, signer: str,
                                                  gateway: str) -> None:
    token = auth.family(signer).sign(claims(_new_id()))
    await _assert_refused(auth.family(gateway).gateway.url, token)


async def test_public_key_is_never_an_hmac_secret_even_if_hs256_is_allowed(
        auth: AuthStack) -> None:
    """JWT_ALGORITHMS=RS256,HS256 with a public key: HS256 keyed with that PEM is refused."""
    uid = _new_id()
    await _assert_refused(auth.mixed.url, _confusion(auth.rs, uid))
    client, first = await _connected(auth.mixed.url, auth.rs.sign(claims(uid)))  # control
    assert first["data"]["user_id"] == uid
    await client.close()


# -- issuer, audience, leeway -----------------------------------------------------------

STRICT_CASES: list[tuple[str, Callable[[], dict[str, Any]], bool]] = [
    ("iss-and-aud-right", lambda: {"iss": ISSUER, "aud": AUDIENCE}, True),
    ("aud-list-holding-ours", lambda: {"iss": ISSUER, "aud": ["other", AUDIENCE]}, True),
    ("wrong-iss", lambda: {"iss": "https://evil.example.com", "aud": AUDIENCE}, False),
    ("missing-iss", lambda: {"aud": AUDIENCE}, False),
    ("wrong-aud", lambda: {"iss": ISSUER, "aud": "another-service"}, False),
    ("missing-aud", lambda: {"iss": ISSUER}, False),
    ("aud-not-a-string", lambda: {"iss": ISSUER, "aud": 7}, False),
    # JWT_LEEWAY=0 on this gateway: the skew the default leeway absorbs is refused
    ("nbf-5s-ahead-without-leeway",
     lambda: {"iss": ISSUER, "aud": AUDIENCE, "nbf": int(time.time()) + 5}, False),
]


@pytest.mark.parametrize(("name", "extra", "accepted"), STRICT_CASES,
                         ids=[c[0] for c in STRICT_CASES])
async def test_issuer_and_audience_when_configured(
        auth: AuthStack, name: str, extra: Callable[[], dict[str, Any]], accepted: bool) -> None:
    uid = _new_id()
    token = auth.hs.sign(claims(uid, **extra()))
    if accepted:
        client, first = await _connected(auth.strict.url, token)
        assert first["data"]["user_id"] == uid
        await client.close()
    else:
        await _assert_refused(auth.strict.url, token)


async def test_issuer_and_audience_unchecked_when_not_configured(auth: AuthStack) -> None:
    uid = _new_id()
    client, first = await _connected(
        auth.hs.gateway.url, auth.hs.sign(claims(uid, iss="anyone", aud="anything")))
    assert first["data"]["user_id"] == uid
    await client.close()


async def test_leeway_absorbs_clock_skew_on_nbf(auth: AuthStack) -> None:
    """JWT_LEEWAY=10: a token whose nbf is 5 s ahead (an issuer clock running fast) is
    admitted and served."""
    uid = _new_id()
    client, first = await _connected(
        auth.hs.gateway.url, auth.hs.sign(claims(uid, nbf=int(time.time()) + 5)))
    assert first["data"]["user_id"] == uid
    await _assert_serving(client)
    await client.close()


# -- where the token comes from ---------------------------------------------------------

def _hs(uid: int) -> str:
    return _remember(jwt.encode(claims(uid, username=f"u{uid}"), JWT_SECRET, algorithm="HS256"))


@dataclass(frozen=True)
class Source:
    id: str
    # (uid of the token that should win, uid of a decoy) -> WsClient.open kwargs
    open_kwargs: Callable[[int, int], dict[str, Any]]
    bearer_selected: bool = False


SOURCES: list[Source] = [
    Source("query", lambda a, b: {"token": _hs(a)}),
    Source("authorization-bearer", lambda a, b: {"headers": {"Authorization": f"Bearer {_hs(a)}"}}),
    Source("authorization-bearer-lowercase",
           lambda a, b: {"headers": {"Authorization": f"bearer {_hs(a)}"}}),
    Source("subprotocol", lambda a, b: {"subprotocols": ["bearer", _hs(a)]}, True),
    Source("cookie", lambda a, b: {"headers": {"Cookie": f"access_token={_hs(a)}"}}),
    Source("cookie-among-others",
           lambda a, b: {"headers": {"Cookie": f"theme=dark; access_token={_hs(a)}; x=1"}}),
    Source("query-wins-over-header",
           lambda a, b: {"token": _hs(a), "headers": {"Authorization": f"Bearer {_hs(b)}"}}),
    Source("query-wins-over-cookie",
           lambda a, b: {"token": _hs(a), "headers": {"Cookie": f"access_token={_hs(b)}"}}),
    Source("query-wins-over-subprotocol",
           lambda a, b: {"token": _hs(a), "subprotocols": ["bearer", _hs(b)]}, True),
    Source("header-wins-over-cookie",
           lambda a, b: {"headers": {"Authorization": f"Bearer {_hs(a)}",
                                     "Cookie": f"access_token={_hs(b)}"}}),
]


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.id)
async def test_token_sources(auth: AuthStack, source: Source) -> None:
    winner, decoy = _new_id(), _new_id()
    client, first = await _connected(auth.hs.gateway.url, **source.open_kwargs(winner, decoy))
    assert first["data"]["user_id"] == winner
    assert client.conn.subprotocol == ("bearer" if source.bearer_selected else None)
    await client.close()


async def test_query_wins_even_when_its_token_is_bad(auth: AuthStack) -> None:
    await _assert_refused(auth.hs.gateway.url, "garbage",
                          headers={"Authorization": f"Bearer {_hs(_new_id())}"})


async def test_refused_subprotocol_token_still_selects_bearer(auth: AuthStack) -> None:
    """A browser that offered subprotocols fails a handshake that selects none (1006):
    `bearer` is selected, so it sees the 4401."""
    client = await _assert_refused(auth.hs.gateway.url,
                                   subprotocols=["bearer", _remember(unsigned(claims(1)))])
    assert client.conn.subprotocol == "bearer"


async def test_renamed_token_cookie(auth: AuthStack) -> None:
    uid = _new_id()
    token = auth.hs.sign(claims(uid, iss=ISSUER, aud=AUDIENCE))
    client, first = await _connected(auth.strict.url,
                                     headers={"Cookie": f"{RENAMED_COOKIE}={token}"})
    assert first["data"]["user_id"] == uid
    await client.close()
    # the default name means nothing there
    await _assert_refused(auth.strict.url, headers={"Cookie": f"access_token={token}"})


# -- expiry and refresh -----------------------------------------------------------------

async def test_session_closes_at_exp_without_leeway_and_refusals_change_nothing(
        auth: AuthStack) -> None:
    """JWT_LEEWAY=10 on this gateway, yet the close comes at `exp` itself. A refresh
    with another user's token is refused with an error and the connection stays."""
    uid = _new_id()
    payload = claims(uid, ttl=3)
    exp = payload["exp"]
    client, _ = await _connected(auth.hs.gateway.url, auth.hs.sign(payload))
    other = await client.request("refresh", data={"token": auth.hs.sign(claims(uid + 1))})
    assert other["type"] == "error" and other["data"]["code"] == 4401, other
    expired = await client.request("refresh", data={"token": auth.hs.sign(claims(uid, ttl=-60))})
    assert expired["type"] == "error", expired
    assert expired["data"] == {"error": AUTH_FAILED, "code": 4401}
    await _assert_serving(client)
    code = await client.wait_closed(timeout=exp - time.time() + 8)
    closed_at = time.time()
    assert (code, client.close_reason) == (4401, "Token expired")
    assert exp - 0.5 <= closed_at <= exp + 3, (exp, closed_at)  # not exp + JWT_LEEWAY


@pytest.mark.parametrize("alg", ["HS256", "ES256"])
async def test_refresh_keeps_the_connection_past_the_old_exp(auth: AuthStack, alg: str) -> None:
    family = auth.family(alg)
    uid = _new_id()
    payload = claims(uid, ttl=3)
    client, _ = await _connected(family.gateway.url, family.sign(payload))
    fresh = claims(uid, ttl=3600)
    reply = await client.request("refresh", data={"token": family.sign(fresh)})
    assert reply["type"] == "refreshed", reply
    expected = datetime.fromtimestamp(fresh["exp"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert reply["data"] == {"expires_at": expected}
    # The old exp passes with the connection open: a deadline on the close event.
    with pytest.raises(TimeoutError):
        await client.wait_closed(timeout=payload["exp"] - time.time() + 2)
    await _assert_serving(client)
    await client.close()


# -- configuration errors stop the start -----------------------------------------------

@pytest.mark.parametrize(("name", "overrides", "message"), [
    ("public-key-with-hs-only", {"JWT_ALGORITHMS": "HS256"}, "JWT_PUBLIC_KEY: no usable key"),
    ("not-a-pem", {"JWT_ALGORITHMS": "RS256", "JWT_PUBLIC_KEY": "not a key"},
     "JWT_PUBLIC_KEY: no usable key"),
])
def test_unusable_key_stops_the_gateway_with_one_line(
        engine_stacks_of_module: EngineStacks, name: str, overrides: dict[str, str],
        message: str) -> None:
    env = dict(engine_stacks_of_module.start(gateways=0, worker=False).env)  # no process
    env.pop("JWT_SECRET")
    env.update({"JWT_PUBLIC_KEY": rsa_keypair()[1], **overrides})
    result = subprocess.run([sys.executable, "-m", "roomcast.cli.main", "gateway", "--port",
                             str(free_port())], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("roomcast: bad setting " + message), result.stderr
    assert "Traceback" not in result.stderr


# -- logs -------------------------------------------------------------------------------

def test_no_token_reaches_any_log_and_failures_are_logged(auth: AuthStack) -> None:
    """Runs last: every token the tests above presented, in whole and by part."""
    # a token in an HTTP query, as a mistake would put it
    token = auth.hs.sign({"sub": str(_new_id()), "exp": int(time.time()) + 300})
    assert auth.hs.gateway.status(f"/healthz?token={token}") == 200
    wait_sync(lambda: "/healthz?" in auth.hs.gateway.log_text(), what="its access line")
    text = "\n".join(g.log_text() for g in auth.stack.all_gateways)
    assert _tokens_used
    for token in _tokens_used:
        assert token not in text
        for part in token.split("."):
            if len(part) >= 16:
                assert part not in text
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    failures = [r for r in records if r.get("msg") == "auth failed"]
    assert failures
    for record in failures:
        assert record["level"] == "warning"
        assert record["reason"] and record["remote"].startswith("127.0.0.1:")
        assert record["source"] in {"query", "header", "subprotocol", "cookie", "-"}
    # uvicorn's per-connection lines (the path with its query) are not logged at all:
    # the connect records say who connected; an HTTP access line is redacted
    assert not [r for r in records if "WebSocket /api/v1/ws/connect" in r.get("msg", "")]
    probes = [r["msg"] for r in records if "/healthz?" in r.get("msg", "")]
    assert probes and all("/healthz?[redacted]" in m for m in probes)
    assert not [r for r in records if r.get("level") in ("error", "critical") or "exc" in r]
