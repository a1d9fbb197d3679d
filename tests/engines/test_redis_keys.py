"""Redis keys a gateway makes per user or connection expire: none only grows."""

from __future__ import annotations

import redis

from shared import keys
from shared.engines.redis.engine import RedisEngine
from shared.settings import Settings
from tests.support.redis_fixture import RedisUnderTest


async def test_slot_and_presence_keys_expire_with_their_heartbeat(
        redis_server: RedisUnderTest, redis_client: redis.Redis) -> None:
    engine = RedisEngine(Settings(REDIS_URL=redis_server.url, JWT_SECRET="x" * 40,
                                  STREAM_SHARDS=4, WS_HEARTBEAT_INTERVAL=2))
    presence = engine.presence("keys-test")
    assert await presence.claim_slot(41, "c1", 5)
    assert await presence.enter("project:41", 41, "ann", "c1")
    for key in (keys.user_connections(41), keys.instance_slots("keys-test"),
                keys.room_presence("project:41"), keys.room_user_connections("project:41", 41),
                keys.room_presence_names("project:41")):
        ttl = redis_client.pttl(key)
        assert 0 < ttl <= 2 * 2.5 * 1000, (key, ttl)  # 2.5 heartbeats
    assert not redis_client.exists("rc:usernames")  # the old hash that only grew
    await engine.aclose()
