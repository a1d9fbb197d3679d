"""Tokens: where a connection's JWT comes from, and JWT -> Principal or AuthError."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from jose import jwt
from jose.exceptions import ExpiredSignatureError, JWTClaimsError, JWTError
from starlette.websockets import WebSocket

from gateway.errors import AuthError
from shared.settings import Settings

MAX_TOKEN_BYTES = 8192
_POSITIVE_INT = re.compile(r"^[1-9][0-9]{0,18}$")


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    username: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class PresentedToken:
    token: str
    via_subprotocol: bool  # the server must then select the "bearer" subprotocol


def extract_token(websocket: WebSocket, cookie_name: str) -> PresentedToken | None:
    """Query parameter first, then Authorization header, subprotocol, cookie."""
    tokens = websocket.query_params.getlist("token")
    if len(tokens) > 1:
        raise AuthError("repeated token parameter")
    if tokens:
        return PresentedToken(tokens[0], via_subprotocol=False)
    header = websocket.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return PresentedToken(value.strip(), via_subprotocol=False)
    protocols = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",")]
    if len(protocols) >= 2 and protocols[0] == "bearer" and protocols[1]:
        return PresentedToken(protocols[1], via_subprotocol=True)
    cookie = websocket.cookies.get(cookie_name)
    if cookie:
        return PresentedToken(cookie, via_subprotocol=False)
    return None


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self._key = settings.jwt_key
        self._algorithms = list(settings.JWT_ALGORITHMS)
        self._audience = settings.JWT_AUDIENCE
        self._issuer = settings.JWT_ISSUER
        self._leeway = settings.JWT_LEEWAY

    def verify(self, token: str) -> Principal:
        if not self._key:
            raise AuthError("no verification key configured")
        if len(token.encode()) > MAX_TOKEN_BYTES:
            raise AuthError("token too large")
        try:
            header = jwt.get_unverified_header(token)
        except JWTError:
            raise AuthError("malformed token") from None
        if header.get("alg") not in self._algorithms:
            raise AuthError("algorithm not allowed")
        options = {"require_exp": True, "require_sub": True, "verify_aud": bool(self._audience),
                   "verify_iss": bool(self._issuer), "leeway": self._leeway}
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._key, algorithms=self._algorithms, audience=self._audience,
                issuer=self._issuer, options=options)
        except ExpiredSignatureError:
            raise AuthError("token expired") from None
        except JWTClaimsError as exc:
            raise AuthError(f"claims: {str(exc)[:80]}") from None
        except JWTError:
            raise AuthError("bad signature or malformed token") from None
        except Exception:  # malformed key material or payload shapes python-jose trips on
            raise AuthError("malformed token") from None
        return _principal(claims)


def _principal(claims: dict[str, Any]) -> Principal:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not _POSITIVE_INT.fullmatch(sub):
        raise AuthError("sub is not a positive integer string")
    if "type" in claims and claims["type"] != "access":
        raise AuthError("not an access token")
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        raise AuthError("exp is not a number")
    user_id = int(sub)
    username = claims.get("username") or claims.get("preferred_username")
    if not isinstance(username, str) or not username.strip():
        username = f"user-{user_id}"
    return Principal(user_id=user_id, username=username[:128], expires_at=float(exp))


def issue_token(settings: Settings, user_id: int, username: str, ttl: int = 3600,
                now: float | None = None) -> str:
    """A development token signed with the configured HMAC secret."""
    import time

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
