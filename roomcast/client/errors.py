"""Errors raised to callers of the client."""

from __future__ import annotations


class RoomcastError(Exception):
    """The server answered a request with an `error` frame (code as in SPEC)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ClientClosedError(RoomcastError):
    """The client stopped for good before the request got a reply.

    `code` is the close code that ended the client: 1000 for a user close,
    4401/4403 when the server refused the token and no new one was available.
    """
