"""The redaction filter keeps tokens out of log lines without breaking the
formatters around it: served by plain uvicorn (a gateway mounted in a backend's
app), access lines go through uvicorn's own AccessFormatter, which unpacks the
record's arguments; the filter used to replace them with a pre-formatted message,
and every access line became a "--- Logging error ---" traceback."""

from __future__ import annotations

import logging

from uvicorn.logging import AccessFormatter

from gateway.logs import RedactFilter

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl"


def _record(name: str, msg: str, args: tuple[object, ...]) -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)


def test_an_access_line_is_redacted_and_still_formats() -> None:
    record = _record("uvicorn.access", '%s - "%s %s HTTP/%s" %d',
                     ("127.0.0.1:5000", "GET", f"/rt/healthz?token={TOKEN}", "1.1", 200))
    assert RedactFilter().filter(record)
    line = AccessFormatter("%(client_addr)s - %(request_line)s %(status_code)s",
                           use_colors=False).format(record)
    assert line == '127.0.0.1:5000 - GET /rt/healthz?[redacted] HTTP/1.1 200 OK'


def test_a_token_in_the_message_itself_is_redacted() -> None:
    record = _record("roomcast.x", f"Authorization: Bearer {TOKEN} and %s", ("x",))
    assert RedactFilter().filter(record)
    assert record.getMessage() == "Authorization: Bearer [redacted] and x"
    clean = _record("uvicorn.access", '%s - "%s %s HTTP/%s" %d',
                    ("127.0.0.1:5000", "GET", "/rt/healthz", "1.1", 200))
    args = clean.args
    assert RedactFilter().filter(clean) and clean.args is args  # untouched
