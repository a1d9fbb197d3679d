"""The asyncio clients pack commands with hiredis, byte for byte as redis-py's own
packer does, and keep redis-py's conversions and errors for what hiredis refuses."""

from __future__ import annotations

import redis
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import DataError

from shared.engines.redis.client import async_client
from shared.engines.redis.command_packer import (
    HiredisPacking,
    packs_in_c,
    with_hiredis_packing,
)
from shared.settings import Settings

FAST = with_hiredis_packing(Connection)()
PLAIN = Connection()

arguments = st.one_of(
    st.text(max_size=40), st.binary(max_size=40), st.integers(-10**30, 10**30),
    st.floats(allow_nan=False), st.binary(min_size=7000, max_size=7000))


def _wire(chunks: list[bytes] | list[bytes | memoryview]) -> bytes:
    return b"".join(bytes(c) for c in chunks)


# names of one word or several, split on any whitespace ("CONFIG\tGET") as redis-py does
names = st.one_of(st.sampled_from(["SET", "CONFIG GET", b"CLIENT LIST", "CONFIG\tGET",
                                   " SET", b"CLIENT\tLIST"]),
                  st.text(max_size=12), st.binary(max_size=12))


@given(names, st.lists(arguments, max_size=8))
def test_the_bytes_are_redis_pys_own(name: str | bytes, args: list[object]) -> None:
    assert _wire(FAST.pack_command(name, *args)) == _wire(PLAIN.pack_command(name, *args))


def test_what_hiredis_refuses_goes_through_redis_py() -> None:
    packed = _wire(FAST.pack_command("SET", "k", bytearray(b"v")))
    assert packed == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
    for bad in (True, None, object()):
        try:
            FAST.pack_command("SET", "k", bad)
        except DataError:
            continue
        raise AssertionError(f"{bad!r} was packed")


def test_connection_kinds_and_encodings() -> None:
    unix = with_hiredis_packing(UnixDomainSocketConnection)
    assert issubclass(unix, UnixDomainSocketConnection) and issubclass(unix, HiredisPacking)
    assert with_hiredis_packing(UnixDomainSocketConnection) is unix  # made once
    assert packs_in_c({}) and packs_in_c({"encoding": "UTF-8"})
    assert not packs_in_c({"encoding": "latin-1"})
    assert not packs_in_c({"encoding": "utf-8", "encoding_errors": "replace"})


async def test_the_async_client_packs_in_c_against_a_real_redis(
        settings: Settings, redis_client: redis.Redis) -> None:
    client = async_client(settings)
    try:
        assert issubclass(client.connection_pool.connection_class, HiredisPacking)
        await client.set("packer:text", "héllo")
        await client.rpush("packer:list", 7, 2.5, b"\x00\xff", memoryview(b"mv"),
                           bytearray(b"ba"))
        async with client.pipeline(transaction=False) as pipe:
            pipe.incrby("packer:n", 5)
            pipe.execute_command("CONFIG GET", "maxmemory")
            replies = await pipe.execute()
        assert replies[0] == 5 and "maxmemory" in replies[1]  # redis-py parses it to a dict
    finally:
        await client.aclose()
    assert redis_client.get("packer:text") == "héllo".encode()
    assert redis_client.lrange("packer:list", 0, -1) == [b"7", b"2.5", b"\x00\xff", b"mv", b"ba"]
