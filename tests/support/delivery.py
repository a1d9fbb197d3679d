"""Helpers for the delivery-guarantee tests: what Redis holds for a room, direct
publishing through the real publish script, polls with deadlines, and a worker
whose whole process group can be SIGKILLed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import redis

from shared import keys
from shared.codec import encode_event
from shared.engines.redis.engine import RedisEngine
from shared.engines.roles import AppendResult, PendingEvent
from shared.rooms import shard_of
from shared.settings import Settings
from tests.support.stack import Stack
from tests.support.tokens import make_token
from tests.support.ws import WsClient

T = TypeVar("T")
SHARDS = 4  # tests.support.stack.base_env sets STREAM_SHARDS=4


# -- what Redis holds --------------------------------------------------------------------
def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def history_ids(client: redis.Redis, room: str, shards: int = SHARDS) -> list[str]:
    """Ids in the room's history stream, oldest first."""
    return [_text(i) for i, _ in client.xrange(keys.room_history(room, shards))]


def message_ids(client: redis.Redis, room: str, shards: int = SHARDS) -> list[str]:
    """Ids of the `message` events in the room's history (not presence events), oldest first."""
    return [_text(i) for i, fields in client.xrange(keys.room_history(room, shards))
            if fields[b"e"].startswith(b'{"type":"message"')]


def shard_ids_of_room(client: redis.Redis, room: str, shards: int = SHARDS) -> list[str]:
    """Ids of the room's entries in its shard stream (which also holds other rooms and
    the gateways' control entries)."""
    stream = keys.shard_stream(shard_of(room, shards))
    return [_text(i) for i, fields in client.xrange(stream)
            if fields.get(b"r", b"").decode() == room]


def id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def group_names(client: redis.Redis, shard: int) -> list[str]:
    return [_text(g["name"]) for g in client.xinfo_groups(keys.shard_stream(shard))]


# -- waiting -----------------------------------------------------------------------------
async def eventually(probe: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.05,
                     what: str = "condition") -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s (last: {last!r})")
        await asyncio.sleep(interval)  # poll interval


def wait_sync(probe: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.05,
              what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s (last: {last!r})")
        time.sleep(interval)  # poll interval


# -- publishing --------------------------------------------------------------------------
class Writer(Protocol):
    """Appends one event as a worker does, bypassing the job queue (either engine)."""

    def append_event(self, room: str, encoded: bytes, key: str) -> AppendResult: ...


class StreamWriter:
    """Appends one event at a time exactly as a worker does (the same script)."""

    def __init__(self, engine: RedisEngine) -> None:
        self._writer = engine.writer

    def append_event(self, room: str, encoded: bytes, key: str) -> AppendResult:
        return self._writer.append([PendingEvent(key, room, encoded)])[0]


def direct_writer(redis_url: str, **overrides: Any) -> tuple[StreamWriter, redis.Redis]:
    settings = Settings(REDIS_URL=redis_url, JWT_SECRET="unused", STREAM_SHARDS=SHARDS,
                        **overrides)
    client = redis.Redis.from_url(redis_url)
    return StreamWriter(RedisEngine(settings)), client


def message_event(room: str, n: int, size: int = 0) -> bytes:
    data: dict[str, Any] = {"message_id": f"m{n}", "content": "x" * max(1, size),
                            "user_id": 1, "n": n}
    return encode_event("message", room, data, "tester")


def publish_direct(writer: Writer, room: str, count: int, *, size: int = 0,
                   start: int = 0) -> list[str]:
    return [writer.append_event(room, message_event(room, start + i, size), uuid.uuid4().hex).id
            for i in range(count)]


class BackgroundPublisher(threading.Thread):
    """Publishes into a room from another thread until stopped (or `limit` events)."""

    def __init__(self, writer: Writer, room: str, *, limit: int = 10_000,
                 pause: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.writer, self.room, self.limit, self.pause = writer, room, limit, pause
        self.ids: list[str] = []
        self.errors: list[BaseException] = []
        self.started_publishing = threading.Event()
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            for n in range(self.limit):
                if self._halt.is_set():
                    return
                self.ids.append(self.writer.append_event(
                    self.room, message_event(self.room, 100_000 + n), uuid.uuid4().hex).id)
                self.started_publishing.set()
                if self.pause:
                    self._halt.wait(self.pause)  # publishing pace, not a synchronisation
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    def wait_done(self, timeout: float = 60) -> list[str]:
        self.join(timeout)
        assert not self.is_alive(), "publisher still running"
        assert not self.errors, self.errors
        return self.ids

    def stop(self) -> list[str]:
        self._halt.set()
        self.join(30)
        assert not self.errors, self.errors
        return self.ids


# -- clients -----------------------------------------------------------------------------
async def connect(url: str, user_id: int, **kwargs: Any) -> WsClient:
    client = await WsClient.open(url, make_token(user_id, f"u{user_id}"), **kwargs)
    await client.wait_for(lambda f: f["type"] == "connected")
    return client


def events_after(client: WsClient, room: str, frame: dict[str, Any]) -> list[dict[str, Any]]:
    """Room events received after `frame` (e.g. the room_joined reply)."""
    index = next(i for i, f in enumerate(client.frames) if f is frame)
    return [f for f in client.frames[index + 1:] if "id" in f and f.get("room") == room]


# -- processes ---------------------------------------------------------------------------
class WorkerGroup:
    """`roomcast worker` in a session of its own, so SIGKILL reaches the Dramatiq
    parent and its forked worker processes at once, the way a crashed host does."""

    def __init__(self, env: dict[str, str], log_path: Path, threads: int = 4) -> None:
        self.env, self.log_path, self.threads = env, log_path, threads
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerGroup:
        with self.log_path.open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [sys.executable, "-m", "roomcast.cli.main", "worker", "--processes", "1",
                 "--threads", str(self.threads)],
                env=self.env, stdout=log, stderr=log, start_new_session=True)
        return self

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def pause(self) -> None:
        """SIGSTOP the whole group: it stays exactly where it is until `resume`."""
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_group(signal.SIGCONT)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(5)
        self._signal_group(signal.SIGKILL)  # forked children left behind, if any

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def stack_on(redis_url: str, *, gateways: int, worker: bool = True,
             **env: str) -> Iterator[Stack]:
    """A Stack with its own settings (env overrides), stopped at the end."""
    s = Stack(redis_url, env_overrides=dict(env))
    try:
        if worker:
            s.start_worker(threads=2)
        for _ in range(gateways):
            s.add_gateway()
        yield s
    finally:
        s.stop()
