"""The gateway's error hierarchy.

`CommandError` answers one command with an `error` frame and the connection
stays. `ConnectionClose` ends the connection; the route turns it into a close
frame in one place.
"""

from __future__ import annotations

from gateway.close_codes import CloseCode, ErrorCode


class CommandError(Exception):
    def __init__(self, code: ErrorCode, message: str, *, room: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.room = room


class ConnectionClose(Exception):
    def __init__(self, code: CloseCode, reason: str = "") -> None:
        super().__init__(f"{int(code)} {reason}")
        self.code = code
        self.reason = reason


class AuthError(Exception):
    """A token that fails any check. `reason` is for logs and metrics, never the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
