"""The embedded Redis (`roomcast up`, the tests): its port stays its own across
restarts, a port taken at start is replaced, and another Redis that answers on its
port is never mistaken for it. Real redis-server processes."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis

from roomcast.cli.embedded_redis import (
    EmbeddedRedis,
    RedisExited,
    ephemeral_ports,
    stable_port,
)


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    embedded = EmbeddedRedis().start()
    yield embedded
    embedded.cleanup()


def _pid_on(port: int) -> int:
    client = redis.Redis(port=port)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def test_the_port_is_outside_the_ephemeral_range(server: EmbeddedRedis) -> None:
    # Restarts reuse the port: inside the range, any outgoing connection (a gateway
    # reconnecting to this very Redis) could take it while the server is down.
    assert server.port not in ephemeral_ports()
    for _ in range(50):
        assert stable_port() not in ephemeral_ports()


def test_a_restart_keeps_the_port(server: EmbeddedRedis) -> None:
    port = server.port
    server.restart()
    assert server.port == port
    assert server.process is not None and _pid_on(port) == server.process.pid


def test_a_port_taken_after_the_probe_is_replaced() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        offered = iter([taken, stable_port()])
        embedded = EmbeddedRedis(pick_port=lambda: next(offered))
        try:
            embedded.start()
            assert embedded.port != taken
            assert embedded.process is not None
            assert _pid_on(embedded.port) == embedded.process.pid
        finally:
            embedded.cleanup()


def test_another_redis_on_the_port_is_not_taken_for_this_one(
        server: EmbeddedRedis) -> None:
    # The second server cannot bind; the first answers PING on the same port. Only
    # the answering process's pid tells them apart.
    second = EmbeddedRedis(port=server.port)
    try:
        with pytest.raises(RedisExited):
            second.start(timeout=10)
    finally:
        second.cleanup()


def test_a_given_port_is_not_replaced() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        embedded = EmbeddedRedis(port=holder.getsockname()[1])
        try:
            with pytest.raises(RedisExited):
                embedded.start(timeout=10)
        finally:
            embedded.cleanup()
