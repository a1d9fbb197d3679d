"""What a gateway's node refuses at startup, checked by `roomcast gateway` before
uvicorn serves: refused inside uvicorn's lifespan, each was a traceback and
"Application startup failed"; here each is one line and a non-zero exit.

    STREAM_SHARDS    must equal the Redis deployment's (engine.check_config)
    instance id      no live gateway may hold it (the engine's lease on the id)
    memory engine    one gateway per process (SecondGateway)

The checks run on a throwaway engine in an event loop of their own: the node's
clients belong to uvicorn's loop, which does not exist yet. The lease taken for
the check is released at once and taken again by the node in uvicorn's startup,
milliseconds later. A gateway that grabs the same id in that window still stops
this one at startup, with uvicorn's message: the window is narrow, and nothing is
lost either way (the id is never shared by two live gateways).
"""

from __future__ import annotations

import asyncio

from redis.exceptions import RedisError

from roomcast.cli import stack_env
from roomcast.cli.errors import CliError, redact_url
from shared.engines import build_engine
from shared.engines.memory.engine import SecondGateway
from shared.settings import Settings, SettingsError

# The node keeps its lease alive for this many heartbeat intervals (gateway/node.py).
LEASE_HEARTBEATS = 3


async def _check(settings: Settings, instance_id: str) -> bool:
    engine = build_engine(settings)
    try:
        await engine.check_config()
        ttl = settings.WS_HEARTBEAT_INTERVAL * LEASE_HEARTBEATS
        if not await engine.hold_instance(instance_id, ttl):
            return False
        await engine.release_instance(instance_id)
        return True
    finally:
        await engine.aclose()  # only its asyncio clients were used


def check_node_can_start(settings: Settings, instance_id: str,
                         origins: dict[str, str]) -> None:
    try:
        free = asyncio.run(_check(settings, instance_id))
    except SettingsError as exc:
        raise CliError(f"bad setting {exc}", code=2) from None
    except SecondGateway as exc:
        raise CliError(str(exc), code=2) from None
    except (RedisError, OSError) as exc:  # Redis went away since it answered the ping
        raise CliError(f"lost Redis at {redact_url(settings.REDIS_URL)} "
                       f"({stack_env.source('REDIS_URL', origins)}) while starting: "
                       f"{' '.join(str(exc).split())}") from None
    if not free:
        raise CliError(f"gateway instance id {instance_id!r} is in use by a live gateway; "
                       "give this one another --instance-id (or GATEWAY_INSTANCE_ID)")
