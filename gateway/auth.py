"""Tokens: where a connection's JWT comes from, and JWT -> Principal or AuthError.

Verification keys are built once, per allowed algorithm, when the gateway
starts: an HMAC secret only for HS* algorithms and PEM public keys only for
RS*/ES* ones, so a token can never make the gateway use a public key as an
HMAC secret (algorithm confusion), whatever JWT_ALGORITHMS lists.
`JWT_PUBLIC_KEY` may hold several PEM blocks (key rotation: the old and the
new key during the overlap); a token verifies if one of them matches.

`AuthError.reason` is for logs and metrics: a fixed word or two, then
optionally `: detail`. It never contains the token.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jose import jwk, jwt
from jose.backends.base import Key
from jose.exceptions import ExpiredSignatureError, JWTClaimsError, JWTError
from starlette.websockets import WebSocket

from gateway.errors import AuthError
from shared.settings import Settings, SettingsError

log = logging.getLogger("roomcast.auth")

MAX_TOKEN_BYTES = 8192
MAX_USERNAME_LENGTH = 128
# datetime can format any time up to the end of year 9999; a later `exp` is nonsense.
MAX_EXP = 253_402_300_799
MIN_HMAC_SECRET_BYTES = 32
BEARER_SUBPROTOCOL = "bearer"
_POSITIVE_INT = re.compile(r"^[1-9][0-9]{0,18}$")
_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.+?-----END [A-Z0-9 ]+-----", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    username: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class PresentedToken:
    token: str
    source: str  # "query", "header", "subprotocol" or "cookie": for logs, never the token

    @property
    def via_subprotocol(self) -> bool:
        return self.source == "subprotocol"


def offered_subprotocols(websocket: WebSocket) -> list[str]:
    """Every protocol the client offered, over all Sec-WebSocket-Protocol headers."""
    offered = websocket.scope.get("subprotocols") or []
    return [str(p).strip() for p in offered]


def selected_subprotocol(websocket: WebSocket) -> str | None:
    """`bearer` whenever the client offered it: a browser that offered subprotocols
    fails a handshake whose answer selects none, even if the token came another way."""
    return BEARER_SUBPROTOCOL if BEARER_SUBPROTOCOL in offered_subprotocols(websocket) else None


def extract_token(websocket: WebSocket, cookie_name: str) -> PresentedToken | None:
    """Query parameter first, then Authorization header, subprotocol, cookie.

    Empty values count as absent. A repeated `token` parameter is refused: two
    layers (a proxy and the app) could each pick a different one.
    """
    tokens = websocket.query_params.getlist("token")
    if len(tokens) > 1:
        raise AuthError("repeated token parameter")
    if tokens and tokens[0]:
        return PresentedToken(tokens[0], "query")
    header = websocket.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return PresentedToken(value.strip(), "header")
    protocols = offered_subprotocols(websocket)
    if len(protocols) >= 2 and protocols[0] == BEARER_SUBPROTOCOL and protocols[1]:
        return PresentedToken(protocols[1], "subprotocol")
    cookie = websocket.cookies.get(cookie_name)
    if cookie:
        return PresentedToken(cookie, "cookie")
    return None


def _key_material(settings: Settings) -> tuple[str, list[str]] | None:
    """(setting name, key values) of the configured verification key."""
    if settings.JWT_SECRET:
        return "JWT_SECRET", [settings.JWT_SECRET]
    if settings.JWT_PUBLIC_KEY:
        blocks = _PEM_BLOCK.findall(settings.JWT_PUBLIC_KEY)
        return "JWT_PUBLIC_KEY", blocks or [settings.JWT_PUBLIC_KEY]
    return None


def _build_keys(settings: Settings) -> dict[str, list[Key]]:
    """Allowed algorithm -> the keys that verify it. HS* only with a secret, RS*/ES*
    only with public keys; a key unusable for every allowed algorithm stops the start."""
    material = _key_material(settings)
    if material is None:
        return {}
    name, values = material
    symmetric = name == "JWT_SECRET"
    if symmetric and len(values[0].encode()) < MIN_HMAC_SECRET_BYTES:
        log.warning("weak JWT_SECRET", extra={"reason": "shorter than 32 bytes"})
    keys: dict[str, list[Key]] = {}
    for algorithm in settings.JWT_ALGORITHMS:
        if algorithm.startswith("HS") != symmetric:
            continue  # never verify HS* with a public key, nor RS*/ES* with a secret
        for value in values:
            try:
                keys.setdefault(algorithm, []).append(jwk.construct(value, algorithm))
            except Exception:  # JWKError and friends: not a key for this algorithm
                continue
    keys = {alg: found for alg, found in keys.items() if found}
    if not keys:
        family = "HS256/HS384/HS512" if symmetric else "RS*/ES*"
        raise SettingsError(f"{name}: no usable key for JWT_ALGORITHMS "
                            f"({', '.join(settings.JWT_ALGORITHMS)}); this key needs {family}")
    return keys


class TokenVerifier:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self._keys = _build_keys(settings)
        self._audience = settings.JWT_AUDIENCE
        self._issuer = settings.JWT_ISSUER
        self._leeway = settings.JWT_LEEWAY
        self._clock = clock

    @property
    def algorithms(self) -> list[str]:
        return list(self._keys)

    def verify(self, token: str) -> Principal:
        if not self._keys:
            raise AuthError("no verification key configured")
        try:
            size = len(token.encode())
        except UnicodeEncodeError:
            raise AuthError("malformed token") from None
        if size > MAX_TOKEN_BYTES:
            raise AuthError("token too large")
        try:
            header = jwt.get_unverified_header(token)
        except Exception:  # JWTError, or a header python-jose trips on
            raise AuthError("malformed token") from None
        algorithm = header.get("alg") if isinstance(header, dict) else None
        keys = self._keys.get(algorithm) if isinstance(algorithm, str) else None
        if keys is None:
            raise AuthError("algorithm not allowed")
        options = {"require_exp": True, "require_sub": True,
                   "require_aud": bool(self._audience), "verify_aud": bool(self._audience),
                   "require_iss": bool(self._issuer), "verify_iss": bool(self._issuer),
                   "leeway": self._leeway}
        try:
            claims: dict[str, Any] = jwt.decode(
                token, keys, algorithms=[algorithm], audience=self._audience,
                issuer=self._issuer, options=options)
        except ExpiredSignatureError:
            raise AuthError("token expired") from None
        except JWTClaimsError as exc:
            raise AuthError(f"claims: {str(exc)[:80]}") from None
        except JWTError as exc:
            reason = "missing claim" if "missing required key" in str(exc) else "bad signature"
            raise AuthError(reason) from None
        except Exception:  # malformed payloads python-jose trips on (huge ints, deep nesting)
            raise AuthError("malformed token") from None
        return _principal(claims, self._clock())


def _principal(claims: dict[str, Any], now: float) -> Principal:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not _POSITIVE_INT.fullmatch(sub):
        raise AuthError("bad sub")
    if "type" in claims and claims["type"] != "access":
        raise AuthError("not an access token")
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)) or not math.isfinite(exp):
        raise AuthError("bad exp")
    if exp > MAX_EXP:
        raise AuthError("bad exp")
    # JWT_LEEWAY absorbs clock skew on nbf/iat; an open connection is closed at
    # `exp` itself, so a token already past it would connect only to be closed.
    if exp <= now:
        raise AuthError("token expired")
    user_id = int(sub)
    username = (_name(claims.get("username")) or _name(claims.get("preferred_username"))
                or f"user-{user_id}")
    return Principal(user_id=user_id, username=username, expires_at=float(exp))


def _name(value: object) -> str | None:
    """A usable display name, or None: a non-blank string that can be sent as UTF-8."""
    if not isinstance(value, str) or not value.strip():
        return None
    name = value[:MAX_USERNAME_LENGTH]
    try:
        name.encode()
    except UnicodeEncodeError:  # lone surrogates from \\ud800-style escapes
        return None
    return name


def issue_token(settings: Settings, user_id: int, username: str, ttl: int = 3600,
                now: float | None = None) -> str:
    """A development token signed with the configured HMAC secret."""
    if not settings.JWT_SECRET:
        raise AuthError("issuing tokens needs JWT_SECRET (HMAC)")
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {"sub": str(user_id), "username": username, "iat": issued,
                              "exp": issued + ttl, "type": "access"}
    if settings.JWT_AUDIENCE:
        claims["aud"] = settings.JWT_AUDIENCE
    if settings.JWT_ISSUER:
        claims["iss"] = settings.JWT_ISSUER
    algorithm = next((a for a in settings.JWT_ALGORITHMS if a.startswith("HS")), "HS256")
    token: str = jwt.encode(claims, settings.JWT_SECRET, algorithm=algorithm)
    return token
