"""Structured JSON logs, and the filter that keeps tokens out of every line.

uvicorn logs a WebSocket's path with its query string, where a token may be;
the filter redacts every query string and any bearer value before formatting.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

import orjson

_QUERY = re.compile(r"\?[^\s\"']*")
_BEARER = re.compile(r"(?i)(bearer[ ,]+)[A-Za-z0-9._~+/=-]+")
_JWT_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# What any of the three needs to find: most values have none of it, and one search
# costs less than three substitutions (every connect and disconnect logs a line).
_MAY_HOLD_TOKEN = re.compile(r"\?|eyJ|(?i:bearer)")
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "color_message"}


def redact(text: str) -> str:
    if not _MAY_HOLD_TOKEN.search(text):
        return text
    text = _QUERY.sub("?[redacted]", text)
    text = _BEARER.sub(r"\1[redacted]", text)
    return _JWT_LIKE.sub("[redacted]", text)


# uvicorn logs a client's invalid UTF-8 text frame as an error with a traceback,
# although it is the client's fault and the connection is closed with 1007 as RFC
# 6455 asks: any client could fill the logs with tracebacks. Such records become
# one warning line without the traceback.
_CLIENT_FAULTS = {
    ("uvicorn.error", "Invalid UTF-8 sequence received from client."):
        "invalid UTF-8 in a text frame: closed 1007",
}


# Per-connection lines of uvicorn and websockets, said again (with the user, the
# connection id and the close code) by our own `connect` and `disconnect` records:
# three more log lines per connection were a tenth of a gateway's CPU in a connect
# storm (py-spy). Warnings and errors from them are kept.
REPEATED_CONNECTION_LINES = frozenset(
    {'%s - "WebSocket %s" [accepted]', "connection open", "connection closed"})


class RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and record.msg in REPEATED_CONNECTION_LINES:
            return False
        fault = _CLIENT_FAULTS.get((record.name, str(record.msg)))
        if fault is not None:
            record.msg, record.args = fault, None
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            return True
        message = record.getMessage()
        if redact(message) == message:
            return True
        if isinstance(record.args, tuple):
            # Redact the arguments and keep their shape: uvicorn's access formatter
            # unpacks them (client, method, path, version, status).
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
            message = record.getMessage()
            if redact(message) == message:
                return True
        record.msg, record.args = redact(message), None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def log_config(level: str = "INFO") -> dict[str, Any]:
    """A dictConfig for uvicorn and roomcast: JSON to stderr, tokens redacted."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "filters": ["redact"],
               "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "gateway.logs.RedactFilter"}},
        "formatters": {"json": {"()": "gateway.logs.JsonFormatter"}},
        "handlers": {"default": handler},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": ["default"], "level": level, "propagate": False},
            "roomcast": {"handlers": ["default"], "level": level, "propagate": False},
        },
    }


def install_redaction() -> None:
    """Redact tokens in uvicorn's and roomcast's loggers whatever configured logging:
    the app may run under plain uvicorn or inside a backend's app."""
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "roomcast"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactFilter) for f in logger.filters):
            logger.addFilter(RedactFilter())
