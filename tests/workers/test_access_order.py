"""A link and a grant from one producer take effect in that order, whatever the
backlog on other shards: `link_room(channel, project)` then
`grant_access(user, project).wait()` admits the user to the channel at once."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from shared.codec import encode_event
from shared.engines.redis.engine import RedisEngine
from shared.engines.roles import EventJob, PendingEvent
from shared.rooms import shard_of
from shared.settings import Settings
from tests.support.delivery import SHARDS, WorkerGroup, stack_on
from tests.support.redis_fixture import RedisUnderTest
from tests.support.stack import JWT_SECRET, Stack
from workers.api import Backend

BACKLOG = 3000  # events queued on the channel's shard ahead of everything else


@pytest.fixture(scope="module")
def stack(redis_server: RedisUnderTest) -> Iterator[Stack]:
    with stack_on(redis_server.url, gateways=0, worker=False) as s:
        yield s


def _rooms_on_other_shards(unique_id: Callable[[], int]) -> tuple[str, str]:
    """A channel and a project whose rooms live on different shards."""
    while True:
        channel, project = f"channel:{unique_id()}", f"project:{unique_id()}"
        if shard_of(channel, SHARDS) != shard_of(project, SHARDS):
            return channel, project


def test_a_grant_waited_for_admits_to_a_channel_linked_before_it(
        stack: Stack, unique_id: Callable[[], int]) -> None:
    settings = Settings(REDIS_URL=stack.redis_url, JWT_SECRET=JWT_SECRET, STREAM_SHARDS=SHARDS)
    engine = RedisEngine(settings)
    backend = Backend(settings)
    channel, project = _rooms_on_other_shards(unique_id)
    user = unique_id()
    # a backlog on the channel's shard, queued before the link and the grant
    backlog = [PendingEvent(f"b{n}", channel, encode_event(
        "message.deleted", channel, {"message_id": f"m{n}"}, "t")) for n in range(BACKLOG)]
    backend.enqueue([EventJob(tuple(backlog))])
    backend.link_room(channel, project)
    grant = backend.grant_access(user, project)
    worker = WorkerGroup(stack.env, stack.workdir / "worker.log").start()
    try:
        assert grant.wait(timeout=30)
        assert engine.access_store.granted(user, channel), "the link was not in force yet"
    finally:
        worker.stop()
        backend.close()
        engine.close()
