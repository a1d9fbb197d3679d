"""The redaction filter keeps tokens out of log lines without breaking the
formatters around it: served by plain uvicorn (a gateway mounted in a backend's
app), access lines go through uvicorn's own AccessFormatter, which unpacks the
record's arguments; the filter used to replace them with a pre-formatted message,
and every access line became a "--- Logging error ---" traceback."""

from __future__ import annotations

import json
import logging

from uvicorn.logging import AccessFormatter

from gateway.logs import JsonFormatter, RedactFilter

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


def test_a_json_line_redacts_every_field_and_takes_any_value() -> None:
    record = _record("roomcast.ws", "connect", ())
    record.connection_id = "c-1"
    record.url = f"/ws?token={TOKEN}"
    record.header = f"bearer {TOKEN}"
    record.bare = TOKEN
    record.counts = {1: 2}  # not a string key
    record.when = object()  # not serialisable: its str()
    entry = json.loads(JsonFormatter().format(record))
    assert entry["msg"] == "connect" and entry["connection_id"] == "c-1"
    assert entry["url"] == "/ws?[redacted]"
    assert entry["header"] == "bearer [redacted]"
    assert entry["bare"] == "[redacted]"
    assert entry["counts"] == {"1": 2} and entry["when"].startswith("<object")
    assert TOKEN not in json.dumps(entry)
