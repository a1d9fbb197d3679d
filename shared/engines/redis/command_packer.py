"""hiredis's C command packer for redis-py's asyncio connections.

redis-py's sync connections pack commands with `hiredis.pack_command` when
hiredis is installed, but its asyncio connections (redis-py 8.1) always pack in
Python: about 10 µs for a ten-argument EVALSHA against 2 µs in C. In a connect
storm that Python packing was 9 % of a gateway's CPU (py-spy), because every
connect sends a few commands through the command batcher's pipelines.

The bytes on the wire are the same (tests/engines/test_command_packer.py
compares them). Whatever hiredis refuses (a bytearray, a bool, None) goes
through redis-py's own packer, so its conversions and its `DataError`s stay as
they were.
"""

from __future__ import annotations

import functools
from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection


class HiredisPacking(AbstractConnection):  # type: ignore[misc]  # mypy sees it as Any
    """Mixed in before a redis.asyncio connection class (see `with_hiredis_packing`)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        name = args[0]
        # a command name of several words ("CONFIG GET") is sent as separate arguments,
        # split on any whitespace as redis-py does; a one-word name needs no split
        if isinstance(name, str):
            if not name.isalpha():
                args = (*name.encode().split(), *args[1:])
        elif isinstance(name, bytes) and b" " in name:
            args = (*name.split(), *args[1:])
        try:
            packed: bytes = hiredis.pack_command(args)
            return [packed]
        except TypeError:
            chunks: list[bytes] = super().pack_command(*args)
            return chunks


@functools.cache
def with_hiredis_packing(connection_class: type[AbstractConnection]
                         ) -> type[AbstractConnection]:
    """`connection_class` (plain, TLS or Unix socket) packing its commands in C."""
    if issubclass(connection_class, HiredisPacking):
        return connection_class
    return type(f"Hiredis{connection_class.__name__}", (HiredisPacking, connection_class), {})


def packs_in_c(connection_kwargs: dict[str, Any]) -> bool:
    """Whether connections made with these options may use the C packer."""
    encoding = str(connection_kwargs.get("encoding", "utf-8"))
    errors = str(connection_kwargs.get("encoding_errors", "strict"))
    return encoding.lower().replace("-", "").replace("_", "") == "utf8" and errors == "strict"
