"""The taskboard's own login: passwords, sessions, and roomcast tokens.

The app keeps its users and sessions (a cookie) in SQLite. A roomcast token is
just a short-lived JWT for the gateways, signed with the deployment's JWT_SECRET
by roomcast's `issue_token`; the page asks `/api/token` for a new one whenever
the SDK connects or refreshes, so a token never outlives the session by much.

For a demo, the first login with a new name registers it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import sqlite3

from gateway.auth import issue_token
from shared.settings import Settings, load_settings
from taskboard import db
from taskboard.config import settings

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
SESSION_COOKIE = "taskboard_session"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class LoginError(Exception):
    """Wrong password or a malformed name: the message is for the user."""


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def password_matches(password: str, stored: str) -> bool:
    _, salt, _ = stored.split("$")
    return hmac.compare_digest(hash_password(password, bytes.fromhex(salt)), stored)


def login(username: str, password: str) -> tuple[db.Row, str]:
    """(user, new session id); registers an unknown name."""
    if not USERNAME.fullmatch(username):
        raise LoginError("username: 1-32 letters, digits, '.', '_' or '-'")
    if not password:
        raise LoginError("password: must not be empty")
    with db.reading() as conn:
        user = db.user_by_name(conn, username)
    # hashing is slow (on purpose): done before taking the database's write lock
    if user is None:
        new_hash = hash_password(password)
    elif not password_matches(password, str(user["password_hash"])):
        raise LoginError(f"wrong password for {username!r}")
    session_id = secrets.token_urlsafe(32)
    with db.writing() as conn:
        if user is None:
            try:
                user = {"id": db.add_user(conn, username, new_hash), "username": username}
            except sqlite3.IntegrityError:
                raise LoginError(f"{username!r} was registered a moment ago; "
                                 "log in again") from None
        db.add_session(conn, session_id, int(user["id"]))
    return {"id": int(user["id"]), "username": username}, session_id


def session_user(session_id: str | None) -> db.Row | None:
    if not session_id:
        return None
    with db.reading() as conn:
        return db.session_user(conn, session_id)


def logout(session_id: str) -> None:
    with db.writing() as conn:
        db.drop_session(conn, session_id)


@functools.cache
def roomcast_settings() -> Settings:
    return load_settings()  # JWT_SECRET & co., exactly as the gateways read them


def roomcast_token(user: db.Row) -> str:
    """A JWT the gateways accept for this user: `sub` is the user id."""
    return issue_token(roomcast_settings(), int(user["id"]), str(user["username"]),
                       ttl=settings().TOKEN_TTL)
