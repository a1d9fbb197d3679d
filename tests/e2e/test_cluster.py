"""REDIS_CLUSTER=true: the same event path on a three-node Redis Cluster, one
shard reader per shard (keys of different slots cannot be read in one call)."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.cluster import RedisCluster

from roomcast.cli.embedded_redis import RedisExited, find_redis_server, wait_until_answering
from shared import keys
from shared.settings import Settings
from tests.support.delivery import eventually
from tests.support.redis_cluster import (
    BUS_OFFSET,
    cluster_port,
    ephemeral_ports,
    running_cluster,
)
from tests.support.redis_fixture import RedisUnderTest
from tests.support.stack import JWT_SECRET, Stack
from tests.support.tokens import make_token
from tests.support.ws import WsClient
from workers.api import Backend


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    with running_cluster() as url:
        yield url


@pytest.fixture(scope="module")
def cluster_stack(cluster_url: str, redis_server: RedisUnderTest) -> Iterator[Stack]:
    # Dramatiq's broker (domain jobs) needs a plain Redis: it lives beside the cluster.
    s = Stack(cluster_url, env_overrides={"REDIS_CLUSTER": "true", "ACCESS_MODE": "open",
                                          "DRAMATIQ_BROKER_URL": redis_server.url,
                                          "STREAM_SHARDS": "8"})
    s.start_worker()
    s.add_gateway()
    s.add_gateway()
    yield s
    s.stop()


async def test_events_fan_out_and_resume_on_a_cluster(cluster_stack: Stack, cluster_url: str,
                                                      redis_server: RedisUnderTest) -> None:
    # the job queue lives on the cluster too: one inbox per shard, in the shard's slot
    backend = Backend(Settings(REDIS_URL=cluster_url, REDIS_CLUSTER=True, JWT_SECRET=JWT_SECRET,
                               STREAM_SHARDS=8))
    rooms = [f"project:{n}" for n in range(1, 9)]  # spread over shards, so over slots
    clients: list[WsClient] = []
    try:
        a = await WsClient.open(cluster_stack.gateways[0].url, make_token(5001, "a"))
        clients.append(a)
        b = await WsClient.open(cluster_stack.gateways[1].url, make_token(5002, "b"))
        clients.append(b)
        for client in (a, b):
            await client.wait_for(lambda f: f["type"] == "connected")
            for room in rooms:
                assert (await client.join(room))["type"] == "room_joined"
        for n, room in enumerate(rooms):
            backend.project_updated(room, project_id=n + 1, changes={"n": n})
        for room in rooms:
            got_a = await a.wait_events(room, 1, type_="project.updated")
            got_b = await b.wait_events(room, 1, type_="project.updated")
            assert got_a[0]["id"] == got_b[0]["id"]

        # resume from the first event's id on the other gateway replays the rest
        first_room = rooms[0]
        since = a.events(first_room, "project.updated")[0]["id"]
        backend.project_updated(first_room, project_id=1, changes={"n": "late"})
        await a.wait_events(first_room, 2, type_="project.updated")
        c = await WsClient.open(cluster_stack.gateways[1].url, make_token(5003, "c"))
        clients.append(c)
        await c.wait_for(lambda f: f["type"] == "connected")
        joined = await c.join(first_room, since=since)
        assert joined["data"]["recovered"] is True and joined["data"]["replayed"] >= 1
        replayed = await c.wait_events(first_room, 1, type_="project.updated")
        assert replayed[0]["data"]["changes"] == {"n": "late"}

        # the shard streams really are spread over different cluster nodes
        cluster = RedisCluster.from_url(cluster_url)
        nodes = {cluster.get_node_from_key(keys.shard_stream(s)).name for s in range(8)}
        cluster.close()
        assert len(nodes) > 1
        # every shard's heartbeat comes back through its slot: ready (polled, since one
        # late heartbeat on a loaded machine makes a single sample say 503)
        for gateway in cluster_stack.gateways:
            await eventually(lambda g=gateway: g.status("/readyz") == 200, timeout=15,
                             what=f"/readyz of {gateway.url} answering 200")
    finally:
        for client in clients:  # also on failure: an open socket would fail a later test
            await client.close()
        backend.close()


def test_cluster_ports_stay_below_the_ephemeral_range() -> None:
    # an outgoing connection can take any ephemeral port between our probe and the
    # node's bind, and a node whose bus port is taken exits at once (CI saw it)
    ephemeral = ephemeral_ports()
    for _ in range(50):
        port = cluster_port()
        assert port not in ephemeral and port + BUS_OFFSET not in ephemeral


def test_a_node_whose_bus_port_is_taken_is_noticed_at_once(tmp_path: Path) -> None:
    port = cluster_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port + BUS_OFFSET))
        holder.listen()
        process = subprocess.Popen(
            [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1",
             "--dir", str(tmp_path), "--cluster-enabled", "yes", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # the node's exit is noticed at once; a wait for PING alone would time out
            with pytest.raises(RedisExited):
                wait_until_answering(port, process, timeout=30)
            assert process.returncode not in (None, 0)
        finally:
            process.kill()
            process.wait(10)
