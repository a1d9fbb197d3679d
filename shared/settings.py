"""Every setting of roomcast, read from the environment by one pydantic-settings class.

Settings are built, never imported as a module-level singleton: the gateway's
`create_app(settings)` and the worker's broker take an instance, so each test
builds its own.
"""

from __future__ import annotations

import secrets
import socket
from enum import StrEnum
from typing import Annotated

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from redis.connection import parse_url


class AccessMode(StrEnum):
    ACL = "acl"
    OPEN = "open"


class Engine(StrEnum):
    REDIS = "redis"
    MEMORY = "memory"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    REDIS_URL: str = "redis://localhost:6379/0"
    REDIS_CLUSTER: bool = False
    DRAMATIQ_BROKER_URL: str | None = None

    JWT_SECRET: str | None = None
    JWT_PUBLIC_KEY: str | None = None
    JWT_ALGORITHMS: Annotated[list[str], NoDecode] = ["HS256"]
    JWT_AUDIENCE: str | None = None
    JWT_ISSUER: str | None = None
    JWT_LEEWAY: int = Field(default=10, ge=0, le=30)

    WS_MAX_CONNECTIONS_PER_USER: int = Field(default=5, ge=1)
    WS_HEARTBEAT_INTERVAL: float = Field(default=30, gt=0)
    WS_MESSAGE_MAX_SIZE: int = Field(default=1_048_576, ge=256)
    WS_ALLOWED_ORIGINS: Annotated[list[str] | None, NoDecode] = None
    WS_TOKEN_COOKIE: str = "access_token"
    WS_MAX_ROOMS_PER_CONNECTION: int = Field(default=100, ge=1)
    WS_RATE_LIMIT: float = Field(default=20, gt=0)
    WS_RATE_BURST: int = Field(default=40, ge=1)
    WS_SEND_QUEUE_MAX: int = Field(default=1000, ge=1)
    # Queued bytes plus the transport's write buffer, per connection.
    WS_SEND_BUFFER_MAX_BYTES: int = Field(default=4_194_304, ge=262_144)
    # An event's encoded size, checked at enqueue and again in the worker.
    EVENT_MAX_BYTES: int = Field(default=65_536, ge=1024)
    WS_MAX_CONTENT_LENGTH: int = Field(default=4000, ge=1)
    # Rooms with more users present than this get no user_joined / user_left (every
    # join would otherwise send a frame to every member: n^2 frames as a room fills);
    # the presence command still answers. 0 = every room gets them.
    PRESENCE_EVENTS_MAX_USERS: int = Field(default=0, ge=0)

    ACCESS_MODE: AccessMode = AccessMode.ACL
    GATEWAY_INSTANCE_ID: str | None = None
    ENGINE: Engine = Engine.REDIS
    STREAM_SHARDS: int = Field(default=8, ge=1, le=1024)
    ROOM_HISTORY_SIZE: int = Field(default=1000, ge=1)
    ROOM_HISTORY_TTL: int = Field(default=86400, ge=1)

    # Modules that register a backend's own event types (comma list), imported by
    # workers and gateways so they check those types too.
    EVENT_MODULES: Annotated[list[str], NoDecode] = []

    # The job queue from producers to the workers: entries per shard before an enqueue
    # pushes back, and how long it then waits for room before raising QueueFull.
    PUBLISH_QUEUE_MAX: int = Field(default=100_000, ge=1)
    PUBLISH_QUEUE_TIMEOUT: float = Field(default=10.0, ge=0)

    # Not in the public contract: the API key guarding POST /api/v1/events (unset = route off).
    EVENTS_API_KEY: str | None = None
    # Not in the public contract: how long (s) another instance's consumer groups may sit
    # idle before a gateway's janitor destroys them (SPEC: a day).
    GATEWAY_JANITOR_IDLE: float = Field(default=86_400, gt=0)

    @field_validator("JWT_ALGORITHMS", mode="before")
    @classmethod
    def _split_algorithms(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            if not value:
                raise ValueError("must name at least one algorithm")
            if any(str(v).lower() == "none" for v in value):
                raise ValueError("'none' is never accepted")
            allowed = {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
                       "ES256", "ES384", "ES512"}
            unknown = [v for v in value if v not in allowed]
            if unknown:
                raise ValueError(f"unsupported algorithm(s): {', '.join(map(str, unknown))}")
        return value

    @field_validator("EVENT_MODULES", mode="before")
    @classmethod
    def _split_modules(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("REDIS_URL", "DRAMATIQ_BROKER_URL")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        # checked here, at start, rather than by the first connection deep in a stack
        if value is not None:
            options = parse_url(value)  # ValueError with redis-py's reason (scheme, port...)
            if options.get("protocol") not in (None, 2, "2"):
                # redis-py then hands replies over in RESP3 shapes that our readers and
                # the worker do not parse: refuse at start, not with a deaf gateway
                raise ValueError("protocol=3 is not supported: remove it from the URL "
                                 "(roomcast uses redis-py's default replies)")
        return value

    @field_validator("WS_ALLOWED_ORIGINS", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
            return parts or None
        return value

    @model_validator(mode="after")
    def _one_signing_key(self) -> Settings:
        if self.JWT_SECRET and self.JWT_PUBLIC_KEY:
            raise ValueError("JWT_SECRET and JWT_PUBLIC_KEY: set exactly one, not both")
        return self

    @model_validator(mode="after")
    def _events_fit_the_send_buffer(self) -> Settings:
        # a replay writes events in chunks of a few; each must fit with room to spare
        if self.EVENT_MAX_BYTES * 4 > self.WS_SEND_BUFFER_MAX_BYTES:
            raise ValueError(f"EVENT_MAX_BYTES: at most a quarter of WS_SEND_BUFFER_MAX_BYTES "
                             f"({self.WS_SEND_BUFFER_MAX_BYTES // 4})")
        return self

    @property
    def broker_url(self) -> str:
        return self.DRAMATIQ_BROKER_URL or self.REDIS_URL

    @property
    def jwt_key(self) -> str | None:
        return self.JWT_SECRET or self.JWT_PUBLIC_KEY

    def require_jwt_key(self) -> None:
        """Outside `roomcast up`, a gateway without a verification key must not start."""
        if not self.jwt_key:
            raise SettingsError("JWT_SECRET / JWT_PUBLIC_KEY: exactly one is required")

    def instance_id(self, port: int | None) -> str:
        """GATEWAY_INSTANCE_ID, else host and port: stable across restarts of one
        instance. Without a known port (the app made before the server binds one) a
        random suffix keeps two gateways on one host apart; the lease on the id
        (see gateway/node.py) refuses a live duplicate either way."""
        if self.GATEWAY_INSTANCE_ID:
            return self.GATEWAY_INSTANCE_ID
        suffix = str(port) if port else f"x{secrets.token_hex(4)}"
        return f"{socket.gethostname()}-{suffix}"


class SettingsError(Exception):
    """A bad setting: the message is one line naming the variable."""


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment, turning validation errors into one line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"]) or "settings"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"{name}: {message}") from None
