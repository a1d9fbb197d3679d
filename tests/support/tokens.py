"""JWTs for tests, signed like a real identity provider would."""

from __future__ import annotations

import time
from typing import Any

from jose import jwt

from tests.support.stack import JWT_SECRET


def make_token(user_id: int | str, username: str | None = "tester", *, ttl: float = 3600,
               secret: str = JWT_SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": str(user_id), "exp": int(time.time() + ttl)}
    if username is not None:
        payload["username"] = username
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    token: str = jwt.encode(payload, secret, algorithm=algorithm)
    return token
