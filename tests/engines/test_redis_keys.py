"""Redis keys a gateway makes per user or connection expire: none only grows."""

from __future__ import annotations

import redis

from shared import keys
from shared.engines.redis.engine import RedisEngine
from shared.engines.redis.presence import REFRESH_CHUNK
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


async def test_refresh_renews_every_key_in_chunks_and_revives_nothing(
        redis_server: RedisUnderTest, redis_client: redis.Redis) -> None:
    """More connections than one refresh call takes: all renewed; what left stays gone."""
    engine = RedisEngine(Settings(REDIS_URL=redis_server.url, JWT_SECRET="x" * 40,
                                  STREAM_SHARDS=4, WS_HEARTBEAT_INTERVAL=2))
    instance = "refresh-test"
    presence = engine.presence(instance)
    n = REFRESH_CHUNK * 2 + 7
    users = [(900_000 + i, f"c{i}", f"project:{90_000 + i // 5}") for i in range(n)]
    for user_id, cid, room in users:
        assert await presence.claim_slot(user_id, cid, 5)
        await presence.enter(room, user_id, f"u{user_id}", cid)
    gone_user, gone_cid, gone_room = users[3]
    await presence.leave(gone_room, gone_user, gone_cid)
    await presence.release_slot(gone_user, gone_cid)
    live = [u for u in users if u[0] != gone_user]
    keys_of = [keys.instance_slots(instance)]
    for user_id, _, room in live:
        keys_of += [keys.user_connections(user_id), keys.room_user_connections(room, user_id),
                    keys.room_presence(room), keys.room_presence_names(room)]
    for key in keys_of:  # about to expire
        redis_client.pexpire(key, 1_000)

    await presence.refresh([(u, c) for u, c, _ in live], [(r, u, c) for u, c, r in live])

    short = [key for key in keys_of if redis_client.pttl(key) <= 1_000]
    assert not short, short[:5]
    assert redis_client.zscore(keys.user_connections(live[-1][0]), live[-1][1]) is not None
    # ZADD XX: the connection that left is not brought back
    assert redis_client.zscore(keys.room_presence(gone_room), str(gone_user)) is None
    assert not redis_client.exists(keys.user_connections(gone_user))
    assert redis_client.sismember(keys.presence_rooms(), live[-1][2])
    await engine.aclose()
