"""RoomcastClient with several gateway URLs: a dropped or refused connection
moves the next attempt to the next URL, and the rooms resume there."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import pytest

from roomcast.cli.embedded_redis import free_port
from roomcast.client import Connected, Disconnected, Recovered, RoomcastClient
from tests.client.test_client_local import (
    DEADLINE,
    connect_and_join,
    next_event,
    scripted_server,
)


def make_client(urls: Sequence[str]) -> RoomcastClient:
    return RoomcastClient(urls, "tok-1", backoff_base=0.01, backoff_cap=0.05,
                          restart_jitter=0.01, rng=random.Random(0), request_timeout=DEADLINE,
                          send_rate=None, connect_kwargs={"proxy": None})


def test_needs_a_url() -> None:
    with pytest.raises(ValueError):
        RoomcastClient([], "tok")
    with pytest.raises(ValueError):
        RoomcastClient(["ws://127.0.0.1:1", "ftp://nope"], "tok")


async def test_drop_fails_over_to_the_next_url_and_back() -> None:
    async with scripted_server() as first, scripted_server() as second:
        client = make_client([first.url, second.url])
        stream = client.events()
        async with client:
            assert client.url.startswith(first.url)
            peer = await connect_and_join(first, client, "project:1")
            await peer.event("project:1", "5-0")

            await peer.drop(1011)
            await next_event(stream, Disconnected)
            peer = await second.accept()  # the next attempt goes to the second URL
            assert client.url.startswith(second.url)
            await peer.hello()
            assert (await next_event(stream, Connected)).reconnect is True
            joins = await peer.rejoins(2, recovered=True)
            assert joins["project:1"]["data"] == {"since": "5-0"}
            assert {(await next_event(stream, Recovered)).room for _ in range(2)} == {
                "project:1",
                "user:1",
            }

            await peer.drop(1012)
            await next_event(stream, Disconnected)
            peer = await first.accept()  # round-robin: back to the first
            await peer.hello()
            await peer.rejoins(2, recovered=True)
            await asyncio.wait_for(client.wait_connected(), DEADLINE)


async def test_refused_url_is_skipped() -> None:
    dead = f"ws://127.0.0.1:{free_port()}"  # nothing listens there
    async with scripted_server() as live:
        client = make_client([dead, live.url])
        async with client:
            peer = await live.accept()
            await peer.hello()
            await peer.rejoins(1)
            await asyncio.wait_for(client.wait_connected(), DEADLINE)
            assert client.url.startswith(live.url)
