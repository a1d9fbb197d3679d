"""Group commit for the threaded producer side: concurrent enqueues of one process
share one script call.

The first caller leads a round: it takes every call queued so far, queues all their
jobs with one EVALSHA on the queue's own connection, and hands each caller its
answer. Callers that arrive during the round wait for the next one, which the first
of them leads.

Why: with 8 producer threads each enqueue paid its own send, receive and GIL
hand-over, and Redis its own script call. Measured with 8 threads publishing single
events, one per call: 169 -> 121 microseconds of producer CPU and 33 -> 16 of Redis
CPU per event.

Jobs stay as their producers made them (one inbox entry each): the worker retries
and sets aside a failing job alone, so one producer's job never takes another's
events with it.

What a lone call promised still holds: each caller's jobs for a shard are queued
all or none and in its order, and a full shard refuses them all (each caller then
waits or gives up on its own). Jobs of different callers are different producers',
so their order within a round is free.

Failures stay with their caller: a job Redis cannot take fails its own call only;
a lost connection reaches every caller of the round, who retry; a leader stopped by
a signal (Ctrl-C in the main thread) leaves the others of its round a retryable
error, and a waiter stopped so leaves the queue, passing the lead on if it had it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared import keys
from shared.engines.jobs import job_args
from shared.engines.roles import Job

_OUTAGE = (RedisConnectionError, RedisTimeoutError, OSError)


class _Call:
    """One caller's jobs by shard, waiting for a round; then the shards queued."""

    __slots__ = ("done", "error", "lead", "pending", "queued")

    def __init__(self, pending: Mapping[int, Sequence[Job]]) -> None:
        self.pending = pending
        self.queued: set[int] = set()
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()  # released once: the answer is in, or this caller now leads
        self.lead = False

    def result(self) -> set[int]:
        if self.error is not None:
            raise self.error
        return self.queued


class GroupCommit:
    def __init__(self, client: redis.Redis, script: str, bound: int) -> None:
        self._pool = client.connection_pool
        self._script = script
        self._sha = hashlib.sha1(script.encode()).hexdigest()
        self._bound = bound
        self._reset()
        # A child forked while another thread led a round must not wait for it, nor
        # share the parent's socket.
        os.register_at_fork(after_in_child=functools.partial(_reset_in_child,
                                                             weakref.ref(self)))

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._waiting: list[_Call] = []
        self._busy = False
        self._conn: Any = None

    def submit(self, pending: Mapping[int, Sequence[Job]]) -> set[int]:
        """Queue each shard's jobs, all or none per shard; returns the shards queued.
        Raises what the round met (a connection error: the caller retries)."""
        call = _Call(pending)
        with self._lock:
            self._waiting.append(call)
            lead, self._busy = not self._busy, True
        if not lead:
            try:
                call.done.acquire()  # until the leader answers, or hands the lead over
            except BaseException:  # a signal's exception in the main thread
                self._abandon(call)
                raise
            if not call.lead:
                return call.result()
        self._lead(call)
        return call.result()

    def _abandon(self, call: _Call) -> None:
        """A waiter leaves: out of the queue, and the lead, if it was handed to it,
        goes on to the next waiter, so that nobody waits for a leader that left."""
        with self._lock:
            if call in self._waiting:
                self._waiting.remove(call)
            successor = self._hand_over() if call.lead else None
        if successor is not None:
            successor.done.release()

    def _hand_over(self) -> _Call | None:
        """With the lock held: the lead goes to the first waiter, if any (released by
        the caller once the lock is free)."""
        successor = self._waiting[0] if self._waiting else None
        self._busy = successor is not None
        if successor is not None:
            successor.lead = True
        return successor

    def _lead(self, mine: _Call) -> None:
        calls: list[_Call] = []
        try:
            with self._lock:
                calls, self._waiting = self._waiting, []
            self._round(calls)
        except BaseException as exc:
            for call in calls:
                # The others did not fail; their call did not go through: they retry.
                call.error = exc if call is mine or isinstance(exc, _OUTAGE) else (
                    RedisConnectionError(f"the round was interrupted: {exc!r}"))
            if mine not in calls:
                mine.error = exc
        finally:  # whatever happened, every caller is answered and the lead goes on
            with self._lock:
                if mine in self._waiting:  # interrupted before taking the calls
                    self._waiting.remove(mine)
                successor = self._hand_over()
            for call in calls:
                if call is not mine:
                    call.done.release()
            if successor is not None:
                successor.done.release()

    def _round(self, calls: list[_Call]) -> None:
        """One script call for every call's jobs. A call whose jobs cannot be encoded
        fails alone, before anything is sent."""
        counts: dict[int, int] = {}  # per shard, in order of first use
        shard_args: dict[int, list[Any]] = {}
        sent: list[_Call] = []
        for call in calls:
            try:
                parts = [(shard, job_args(jobs)) for shard, jobs in call.pending.items()]
            except (TypeError, ValueError) as exc:
                call.error = exc
                continue
            sent.append(call)
            for shard, (count, part) in parts:
                counts[shard] = counts.get(shard, 0) + count
                shard_args.setdefault(shard, []).extend(part)
        if not counts:
            return
        shards = list(counts)
        args: list[Any] = [self._bound]
        for shard in shards:
            args += [counts[shard], *shard_args[shard]]
        replies = self._evalsha([keys.inbox(shard) for shard in shards], args)
        queued = {shard for shard, n in zip(shards, replies, strict=True) if n}
        for call in sent:
            call.queued = queued.intersection(call.pending)

    def _evalsha(self, call_keys: list[str], args: list[Any]) -> Any:
        if self._conn is None:
            self._conn = self._pool.get_connection()
        conn = self._conn
        try:
            conn.send_command("EVALSHA", self._sha, len(call_keys), *call_keys, *args)
            try:
                return conn.read_response()
            except NoScriptError:  # a fresh (or flushed) Redis: load it once, then again
                conn.send_command("SCRIPT", "LOAD", self._script)
                conn.read_response()
            conn.send_command("EVALSHA", self._sha, len(call_keys), *call_keys, *args)
            return conn.read_response()
        except ResponseError:
            raise  # an error reply was read: the connection is in step
        except BaseException:
            # lost, or interrupted between a send and its reply: a reply may be left
            # unread, which the next round would take for its own
            conn.disconnect()
            raise


def _reset_in_child(ref: weakref.ref[GroupCommit]) -> None:
    commit = ref()
    if commit is not None:
        commit._reset()
