"""`publish`, `grant`, `revoke`, `link` through a gateway's backend API
(`POST /api/v1/events`, `POST /api/v1/access`, header X-API-Key: EVENTS_API_KEY).

Used with `--url`, for either engine, and without it wherever ENGINE=memory: that
engine's queue lives inside its one gateway's process, so there is no Redis to
go to, and the gateway of the stack `roomcast up` wrote to .roomcast/env is used.
Nothing here touches Redis.
"""

from __future__ import annotations

import argparse
import os
import sys

from roomcast.cli import stack_env
from roomcast.cli.errors import CliError
from shared.engines.roles import Job, QueueFull
from shared.events import InvalidEvent
from shared.settings import Engine, Settings
from workers.remote import RemoteError, RemoteTarget


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def gateway_url(settings: Settings, args: argparse.Namespace, origins: dict[str, str]
                ) -> tuple[str, str] | None:
    """The gateway to queue through and where its URL came from; None: straight to Redis."""
    if args.url:
        return args.url, "--url"
    if settings.ENGINE is not Engine.MEMORY:
        return None
    urls = [u.strip() for u in os.environ.get(stack_env.GATEWAYS_VAR, "").split(",")]
    if not any(urls):
        raise CliError("ENGINE=memory keeps its queue inside its gateway's process: pass "
                       "--url http://HOST:PORT of that gateway (with its EVENTS_API_KEY)",
                       code=2)
    return next(u for u in urls if u), (
        f"the memory-engine stack, no Redis: {stack_env.source(stack_env.GATEWAYS_VAR, origins)}")


def enqueue_through(url: str, why: str, settings: Settings, job: Job,
                    origins: dict[str, str]) -> None:
    key = settings.EVENTS_API_KEY
    if not key:
        raise CliError("the gateway's backend API needs its EVENTS_API_KEY: set it here, or "
                       "run where roomcast up runs (its .roomcast/env holds the key)", code=2)
    try:
        target = RemoteTarget(url, key)
    except RemoteError as exc:
        raise CliError(str(exc), code=2) from None
    # where the URL came from: named in the error unless the user typed it
    came_from = "" if why == "--url" else f"; {why}"
    try:
        target.sync_jobs.enqueue([job])
    except RemoteError as exc:
        raise CliError(_one_line(exc) + came_from) from None
    except InvalidEvent as exc:  # the gateway's own check (e.g. a type it does not know)
        raise CliError(f"the gateway refused it: {_one_line(exc)}", code=2) from None
    except QueueFull as exc:
        raise CliError(f"nothing queued: {_one_line(exc)}") from None
    except ValueError:  # an answer that is not JSON: something else listens there
        raise CliError(f"{url} did not answer as a roomcast gateway{came_from}") from None
    # said once it worked: a failure is the one line above, naming the gateway
    print(f"roomcast: using the gateway {url} ({why}) with "
          f"{stack_env.source('EVENTS_API_KEY', origins)}", file=sys.stderr)
