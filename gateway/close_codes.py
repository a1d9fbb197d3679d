"""Every WebSocket close code the gateway uses, in one place (SPEC §4)."""

from enum import IntEnum


class CloseCode(IntEnum):
    NORMAL = 1000
    INVALID_PAYLOAD = 1007  # invalid UTF-8 in a text frame (RFC 6455)
    POLICY_VIOLATION = 1008  # sustained abuse
    MESSAGE_TOO_BIG = 1009
    KEEPALIVE_TIMEOUT = 1011  # sent by the WebSocket layer: a ping went unanswered (serve.py)
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013  # slow consumer: its send queue overflowed
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    TOO_MANY = 4429
    INTERNAL_ERROR = 4500


class ErrorCode(IntEnum):
    """Codes of `error` replies; the connection stays open."""

    BAD_REQUEST = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    TOO_MANY = 4429
    INTERNAL_ERROR = 4500
