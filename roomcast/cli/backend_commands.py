"""`publish`, `grant`, `revoke`, `link`: queue what a backend would.

Everything that can be checked without Redis is checked first (the event type,
the JSON, the payload, the rooms, the user id), so a typo is one line however
the stack is doing; then Redis must answer before anything is queued. With
`--url`, or on a memory-engine stack, the job goes through a gateway's backend
API instead (via_gateway.py).
"""

from __future__ import annotations

import argparse
import json
import sys

from redis.exceptions import RedisError

from roomcast.cli import stack_env
from roomcast.cli.errors import CliError, redact_url
from roomcast.cli.preflight import check_worker, reachable
from roomcast.cli.via_gateway import enqueue_through, gateway_url
from shared.engines import build_engine
from shared.engines.roles import EventJob, Job, QueueFull
from shared.events import InvalidEvent, UnknownEventType
from shared.publishing import grant_job, link_job, pending_event, revoke_job
from shared.settings import Settings


def _job(settings: Settings, args: argparse.Namespace) -> tuple[Job, str]:
    """The job, and the line saying what was queued."""
    try:
        if args.command == "publish":
            try:
                data = json.loads(args.data)
            except json.JSONDecodeError as exc:
                raise CliError(f"--data is not JSON: {exc.msg} at character {exc.pos}",
                               code=2) from None
            if not isinstance(data, dict):
                raise CliError("--data must be a JSON object, e.g. '{\"title\": \"x\"}'", code=2)
            pending = pending_event(settings, args.type, args.room, data, sender=args.sender,
                                    key=args.key)
            return EventJob((pending,)), pending.key  # the key alone, for scripts
        if args.command == "grant":
            job = grant_job(args.user_id, args.room)
            return job, f"enqueued: grant user {job.user_id} access to {job.room}"
        if args.command == "revoke":
            job = revoke_job(args.user_id, args.room)
            return job, f"enqueued: revoke user {job.user_id}'s access to {job.room}"
        job = link_job(args.room, args.project_room)
        return job, f"enqueued: link {job.room} to {job.project_room} (its members may join)"
    except (UnknownEventType, InvalidEvent, ValueError) as exc:
        raise CliError(str(exc), code=2) from None


def run(settings: Settings, args: argparse.Namespace, origins: dict[str, str]) -> None:
    job, done = _job(settings, args)
    via = gateway_url(settings, args, origins)
    if via is None:
        _enqueue_in_redis(settings, job, origins, queue_anyway=args.queue_anyway)
    else:
        enqueue_through(*via, settings, job, origins)
    print(done, flush=True)


def _enqueue_in_redis(settings: Settings, job: Job, origins: dict[str, str], *,
                     queue_anyway: bool) -> None:
    reachable(settings, origins).close()
    print(f"roomcast: using Redis {redact_url(settings.REDIS_URL)} "
          f"({stack_env.source('REDIS_URL', origins)})", file=sys.stderr)
    engine = build_engine(settings)
    try:
        check_worker(engine.live_workers(), settings.REDIS_URL, queue_anyway=queue_anyway)
        engine.sync_jobs.enqueue([job])
    except QueueFull as exc:
        raise CliError(f"nothing queued: {exc}") from None
    except RedisError as exc:  # Redis went away since the check: nothing was queued
        raise CliError(f"nothing queued: {' '.join(str(exc).split())}") from None
    finally:
        engine.close()
