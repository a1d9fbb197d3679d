"""The CLI's one failure shape: a message the user can act on, shown as one line."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


class CliError(Exception):
    """Printed as `roomcast: <message>`; the process exits with `code`.

    Codes: 2 for a bad argument or setting (the command line must change),
    1 for the world not being as needed (Redis down, port busy, no stack).
    """

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def redact_url(url: str) -> str:
    """The URL without its password, fit for a terminal or a log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))
