"""The Lua scripts of the Redis engine, loaded by name."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def source(name: str) -> str:
    return resources.files(__name__).joinpath(f"{name}.lua").read_text()
