"""Cluster bookkeeping after a gateway crash: `user_left` still comes, and a
restarted instance frees its previous run's connection slots at once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.redis_fixture import RedisUnderTest
from tests.support.stack import Stack
from tests.support.tokens import make_token
from tests.support.ws import WsClient


@pytest.fixture
def open_stack(redis_server: RedisUnderTest, request: pytest.FixtureRequest) -> Iterator[Stack]:
    interval = getattr(request, "param", "1")
    s = Stack(redis_server.url, env_overrides={"ACCESS_MODE": "open",
                                               "WS_HEARTBEAT_INTERVAL": interval,
                                               "WS_MAX_CONNECTIONS_PER_USER": "2"})
    s.add_gateway()
    s.add_gateway()
    yield s
    s.stop()


async def test_user_left_is_published_for_users_of_a_crashed_gateway(
        open_stack: Stack) -> None:
    room = "project:4242"
    watcher = await WsClient.open(open_stack.gateways[0].url, make_token(71, "watcher"))
    doomed = await WsClient.open(open_stack.gateways[1].url, make_token(72, "doomed"))
    for client in (watcher, doomed):
        await client.wait_for(lambda f: f["type"] == "connected")
        assert (await client.join(room))["type"] == "room_joined"
    await watcher.wait_for(lambda f: f["type"] == "user_joined" and f["data"]["user_id"] == 72)

    open_stack.gateways[1].kill()
    # slots expire after 2.5 heartbeats (1 s here), then one sweep: well within 10 s
    left = await watcher.wait_for(
        lambda f: f["type"] == "user_left" and f["data"]["user_id"] == 72, timeout=10)
    assert left["data"]["username"] == "doomed" and left["room"] == room
    presence = await watcher.request("presence", room)
    assert [u["user_id"] for u in presence["data"]["users"]] == [71]
    # exactly one user_left, though both gateways' sweepers ran
    await watcher.request("ping")
    assert len([f for f in watcher.events(room, "user_left")
                if f["data"]["user_id"] == 72]) == 1
    await watcher.close()


@pytest.mark.parametrize("open_stack", ["30"], indirect=True)
async def test_restarted_instance_frees_its_previous_slots(open_stack: Stack) -> None:
    gateway = open_stack.gateways[1]
    token = make_token(81, "busy")
    clients = [await WsClient.open(gateway.url, token) for _ in range(2)]
    for client in clients:
        await client.wait_for(lambda f: f["type"] == "connected")
    refused = await WsClient.open(open_stack.gateways[0].url, token)
    assert await refused.wait_closed() == 4429

    gateway.kill()  # slots would otherwise be held for 2.5 x 30 s
    gateway.start()
    again = [await WsClient.open(open_stack.gateways[0].url, token) for _ in range(2)]
    for client in again:
        hello = await client.wait_for(lambda f: f["type"] in ("connected", "error"))
        assert hello["type"] == "connected"
    for client in again:
        await client.close()
