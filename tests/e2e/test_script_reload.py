"""A Redis that lost its scripts (restarted, or SCRIPT FLUSH) keeps serving: every
script call of a gateway, worker or producer loads its script again and goes on."""

from __future__ import annotations

from collections.abc import Callable

import redis

from shared.settings import Settings
from tests.support.stack import JWT_SECRET, SHARDS, Stack
from tests.support.tokens import make_token
from tests.support.ws import WsClient
from workers.api import Backend


async def test_connect_join_publish_after_script_flush(
        stack: Stack, db: redis.Redis, unique_id: Callable[[], int]) -> None:
    room, user = f"project:{unique_id()}", unique_id()
    backend = Backend(Settings(REDIS_URL=stack.redis_url, JWT_SECRET=JWT_SECRET,
                               STREAM_SHARDS=SHARDS))
    backend.grant_access(user, room).wait(timeout=20)
    db.script_flush()
    # connect (slot claim), join (presence entry, user_joined), publish (queue, append)
    client = await WsClient.open(stack.gateways[0].url, make_token(user, "flushed"))
    await client.wait_for(lambda f: f["type"] == "connected")
    assert (await client.join(room))["type"] == "room_joined"
    await client.wait_events(room, 1, type_="user_joined")
    backend.task_created(room, task_id=1, project_id=1, title="after the flush")
    await client.wait_events(room, 1, type_="task.created")
    await client.close()
    backend.close()
