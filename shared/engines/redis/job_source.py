"""One shard's inbox as its single consumer (a worker thread) sees it.

One worker at a time consumes a shard: it holds the shard's lease, a key with a
random token and a short expiry that it renews on every round. Every step that
changes Redis (append + complete, dead-letter) runs in a script that first checks
the token, so a worker that lost its lease (paused, partitioned, presumed dead)
can no longer complete anything: it is fenced out, and the new holder redoes the
jobs from the pending list. The new holder first claims every job a previous
consumer took and never completed, in queue order, then reads new ones; with
appends deduplicated by event key, a job redone after a crash appends each event
once, and a producer's order holds across any number of crashes.

The client never retries on its own: a read re-issued after a lost reply would
hide the first batch in the pending list. Errors reach the worker loop instead,
which backs off and claims the pending jobs again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared import keys
from shared.engines.jobs import from_fields
from shared.engines.redis.append import InboxCompletion, build_calls, results
from shared.engines.redis.scripts import source
from shared.engines.roles import AppendResult, FetchedJob, LeaseLost, PendingEvent, Unavailable
from shared.settings import Settings

LEASE_TTL_MS = 3000
# A busy shard would renew its lease before every read: once per second is plenty
# against a 3 s expiry (a read blocks for at most BLOCK_MS, under a second).
RENEW_AFTER = 1.0
STRAY_SWEEP_SECONDS = 5.0
STRAY_IDLE_MS = 5000
DEAD_LETTER_CAP = 10_000
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)
# Replies that say "not now" (out of memory, loading its data, a replica mid-failover)
_NOT_NOW = ("OOM", "LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _raw(fields: dict[bytes, bytes]) -> bytes:
    """A job's fields as one blob, kept with a dead letter for inspection or replay."""
    return b"\n".join(k + b"=" + v for k, v in fields.items())


class RedisJobSource:
    def __init__(self, client: redis.Redis, settings: Settings, shard: int,
                 worker_id: str) -> None:
        self.shard = shard
        self._redis = client
        self._settings = settings
        self._consumer = worker_id
        self._token = f"{worker_id}:{uuid.uuid4().hex[:8]}"
        self._inbox = keys.inbox(shard)
        self._group = keys.inbox_group()
        self._lease_key = keys.inbox_lease(shard)
        self._lease = client.register_script(source("lease"))
        self._append = client.register_script(source("append"))
        self._dead = client.register_script(source("dead_letter"))
        self._held = False
        self._claim_pending = True  # after taking the lease or an error: pending first
        self._group_ready = False
        self._swept = time.monotonic()
        self._renewed = 0.0

    # -- the lease ----------------------------------------------------------------------
    def hold(self) -> bool:
        now = time.monotonic()
        if self._held and now - self._renewed < RENEW_AFTER:
            return True  # renewed a moment ago; every completion is fenced anyway
        try:
            reply = self._lease(keys=[self._lease_key], args=[self._token, LEASE_TTL_MS, "1"])
            held = reply == 1
        except _UNAVAILABLE as exc:
            raise Unavailable(str(exc)) from exc
        if held and not self._held:
            self._claim_pending = True  # a new holder redoes what the last one left
        self._held = bool(held)
        self._renewed = now
        return self._held

    def release(self) -> None:
        self._held = False
        try:
            self._lease(keys=[self._lease_key], args=[self._token, LEASE_TTL_MS, "0"])
        except _UNAVAILABLE:
            pass  # it expires on its own

    # -- reading --------------------------------------------------------------------------
    def fetch(self, count: int, block_ms: int) -> list[FetchedJob]:
        return fetch_many(self._redis, [self], count, block_ms).get(self.shard, [])

    def _redo_first(self, count: int) -> list[FetchedJob]:
        """After taking the lease or an error: the jobs taken and never completed."""
        if self._claim_pending:
            claimed = self._claim(count)
            if claimed:
                return claimed
            self._claim_pending = False
        return []

    def _stray(self, count: int) -> list[FetchedJob]:
        """Idle: any job still pending this long is one nobody works on (a read whose
        reply never arrived, yet raised nothing): take it up."""
        if time.monotonic() - self._swept <= STRAY_SWEEP_SECONDS:
            return []
        self._swept = time.monotonic()
        return self._claim(count, min_idle_ms=STRAY_IDLE_MS)

    def _failed(self, exc: Exception) -> None:
        """A read failed: its reply may have been lost with its connection."""
        self._claim_pending = True
        if isinstance(exc, ResponseError):
            # NOGROUP (a Redis reset), UNBLOCKED (Redis 7: the key was deleted under a
            # blocked read), WRONGTYPE (the key replaced): the inbox or its group may be
            # gone; making them again is harmless when they are not (BUSYGROUP)
            self._group_ready = False

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self._redis.xgroup_create(self._inbox, self._group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _claim(self, count: int, min_idle_ms: int = 0) -> list[FetchedJob]:
        """Pending jobs, whoever took them, oldest first (we hold the lease)."""
        reply = self._redis.xautoclaim(self._inbox, self._group, self._consumer, min_idle_ms,
                                       "0-0", count=count)
        entries = reply[1] if len(reply) > 1 else []
        return [self._job(i, f) for i, f in entries if f]

    def _job(self, raw_id: Any, fields: dict[bytes, bytes]) -> FetchedJob:
        ref = _text(raw_id)
        try:
            return FetchedJob(ref, from_fields(fields), _raw(fields))
        except (KeyError, ValueError, TypeError, UnicodeDecodeError):
            return FetchedJob(ref, None, _raw(fields))

    # -- completing -----------------------------------------------------------------------
    def complete(self, refs: Sequence[str], events: Sequence[PendingEvent]
                 ) -> list[AppendResult]:
        completion = InboxCompletion(self.shard, self._token, list(refs))
        calls = build_calls(self._settings, events, completion)
        try:
            replies = [self._append(keys=c.keys, args=c.args) for c in calls]
        except ResponseError as exc:
            self._fenced(exc)
            raise
        except _UNAVAILABLE as exc:
            self._claim_pending = True
            raise Unavailable(str(exc)) from exc
        return results(calls, replies, len(events))

    def dead_letter(self, fetched: FetchedJob, reason: str, *, remove: bool = True) -> None:
        try:
            self._dead(keys=[self._inbox, self._lease_key, keys.dead_letters(self.shard)],
                       args=[self._token, self._group, fetched.ref if remove else "",
                             reason[:500], fetched.raw, DEAD_LETTER_CAP])
        except ResponseError as exc:
            self._fenced(exc)
            raise
        except _UNAVAILABLE as exc:
            raise Unavailable(str(exc)) from exc

    def _fenced(self, exc: ResponseError) -> None:
        """Lease lost, or Redis unable to work right now: both are not the job's fault."""
        self._claim_pending = True
        text = str(exc)
        if text.startswith("FENCED"):
            self._held = False
            raise LeaseLost(f"lost the lease of shard {self.shard}") from None
        if text.startswith(_NOT_NOW):
            raise Unavailable(text) from exc


def fetch_many(client: redis.Redis, sources: Sequence[RedisJobSource], count: int,
               block_ms: int) -> dict[int, list[FetchedJob]]:
    """One blocking read over the inboxes of several shards this worker holds (one
    thread then serves them all: a thread per shard cost more in GIL hand-offs than
    the work itself). Jobs to redo come first, without blocking."""
    try:
        out: dict[int, list[FetchedJob]] = {}
        for source in sources:
            source._ensure_group()
            redo = source._redo_first(count)
            if redo:
                out[source.shard] = redo
        if out:
            return out
        by_inbox = {source._inbox: source for source in sources}
        first = sources[0]
        reply = client.xreadgroup(first._group, first._consumer,
                                  {inbox: ">" for inbox in by_inbox}, count=count, block=block_ms)
        if not reply:
            for source in sources:
                stray = source._stray(count)
                if stray:
                    out[source.shard] = stray
            return out
        for raw_inbox, entries in reply:
            source = by_inbox[_text(raw_inbox)]
            out[source.shard] = [source._job(i, f) for i, f in entries]
        return out
    except _UNAVAILABLE as exc:
        for source in sources:
            source._failed(exc)
        raise Unavailable(str(exc)) from exc
    except ResponseError as exc:
        for source in sources:
            source._failed(exc)
        if "NOGROUP" in str(exc) or str(exc).startswith("UNBLOCKED"):
            raise Unavailable(str(exc)) from exc  # made again on the next read
        raise
