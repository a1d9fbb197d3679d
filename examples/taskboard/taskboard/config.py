"""The taskboard's own settings (TASKBOARD_*), beside roomcast's (REDIS_URL,
JWT_SECRET, ...), which `workers.api` and `gateway.auth` read themselves.

`python -m taskboard` sets all of them for its children; a bad value stops a
process at start with one line naming the variable.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class TaskboardSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TASKBOARD_", frozen=True, extra="ignore")

    # The SQLite file holding users, sessions, projects, tasks and chat.
    DB: Path = Path("taskboard.db")
    # Gateways the page connects to (http URLs, comma list): the first also serves the SDK.
    GATEWAYS: Annotated[list[str], NoDecode] = ["http://127.0.0.1:8000"]
    # Lifetime of a roomcast token, s; the page asks /api/token for a new one before it ends.
    TOKEN_TTL: int = Field(default=900, ge=30)
    # Actors whose first attempt fails right after publishing (comma list, for the demo
    # and the test of retries): Dramatiq retries them and each event still arrives once.
    FAIL_FIRST_ATTEMPT: Annotated[frozenset[str], NoDecode] = frozenset()

    @field_validator("GATEWAYS", mode="before")
    @classmethod
    def _split_gateways(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            if not value:
                raise ValueError("name at least one gateway URL")
            bad = [url for url in value if not str(url).startswith(("http://", "https://"))]
            if bad:
                raise ValueError(f"{bad[0]!r} is not an http(s) URL")
        return value

    @field_validator("FAIL_FIRST_ATTEMPT", mode="before")
    @classmethod
    def _split_actors(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def websocket_urls(self) -> list[str]:
        return ["ws" + url.removeprefix("http") for url in self.GATEWAYS]


class ConfigError(Exception):
    """A bad TASKBOARD_* setting: one line naming the variable."""


PREFIX = "TASKBOARD_"


def load(environ: Mapping[str, str] | None = None) -> TaskboardSettings:
    """The settings from `environ` (default: this process's environment)."""
    values = {name.removeprefix(PREFIX): value
              for name, value in (os.environ if environ is None else environ).items()
              if name.startswith(PREFIX)}
    try:
        return TaskboardSettings(**values)  # type: ignore[arg-type]  # strings, validated
    except ValidationError as exc:
        first = exc.errors()[0]
        name = PREFIX + ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{name}: {str(first['msg']).removeprefix('Value error, ')}") from None


@functools.cache
def settings() -> TaskboardSettings:
    return load()
