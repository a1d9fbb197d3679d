"""One stack for the end-to-end contract tests, whichever engine runs it.

A contract test takes an `EngineStack` (the `engine_stack` fixture, or one made by
`engine_stacks_of_module.start(...)` with its own settings; both in tests/conftest.py)
and never asks which engine is behind it, except to skip what only one engine can
do (`only_on_redis`):

- redis:  a worker and gateways started with `roomcast worker|gateway` on the
          module's Redis; a backend publishes with `workers.api.Backend`.
- memory: one gateway process with ENGINE=memory (its workers inside it; a memory
          engine serves one gateway, so `gateways=2` gives one); a backend publishes
          over `POST /api/v1/events` with EVENTS_API_KEY (`Backend.remote`), and
          `roomcast publish|grant|revoke|link` go there too. No Redis is reachable:
          REDIS_URL names a port nothing listens on.

What a test may use on either: the gateways (`gateway(i)` wraps around, so a test
spreading clients over two gateways puts them all on the one memory gateway), a
token, the backend, the CLI, a room's stored history, the number of jobs still to
do, whether a grant is in force, a direct writer (appends as a worker does,
bypassing the job queue) and extra gateways with their own settings.

The stored history and the direct writer are what a Redis run gets from Redis
itself; a memory run gets them from two test routes that
tests/support/memory_gateway.py adds to its gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import subprocess
import threading
import urllib.error
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
import redis

from roomcast.cli import stack_env
from roomcast.cli.embedded_redis import free_port
from shared import keys
from shared.engines.redis.engine import RedisEngine
from shared.engines.roles import AppendResult
from shared.settings import Settings
from tests.support.delivery import StreamWriter, Writer
from tests.support.gateways import custom_gateway
from tests.support.jobs import jobs_outstanding
from tests.support.stack import SHARDS, Gateway, Stack
from tests.support.tokens import make_token
from workers.api import Backend

EngineName = Literal["redis", "memory"]
ENGINES: tuple[EngineName, ...] = ("redis", "memory")
EVENTS_API_KEY = "contract-events-key-" + "k" * 24
MEMORY_GATEWAY = "tests.support.memory_gateway"
REPO = Path(__file__).resolve().parents[2]


class HttpWriter:
    """Appends through the memory gateway's probe (tests/support/memory_gateway.py),
    one kept-alive connection per thread (a test may publish from a thread while it
    reads history)."""

    def __init__(self, port: int) -> None:
        self._port = port  # the gateway's
        self._local = threading.local()
        self._opened: list[http.client.HTTPConnection] = []  # every thread's, to close
        self._lock = threading.Lock()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection("127.0.0.1", self._port,
                                                                 timeout=30)
            with self._lock:
                self._opened.append(conn)
        return conn

    def append_event(self, room: str, encoded: bytes, key: str) -> AppendResult:
        body = orjson.dumps([{"room": room, "encoded": encoded.decode(), "key": key}])
        conn = self._conn()
        conn.request("POST", "/_test/append", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = response.read()
        assert response.status == 200, (response.status, payload[:300])
        [[entry_id, appended]] = orjson.loads(payload)
        return AppendResult(entry_id, appended)

    def close(self) -> None:
        with self._lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()


def _with_db(url: str, db: int) -> str:
    return url.rsplit("/", 1)[0] + f"/{db}"


def settings_of(env: dict[str, str]) -> Settings:
    """The Settings a process started with `env` reads."""
    return Settings(**{k: v for k, v in env.items() if k in Settings.model_fields})


class EngineStack:
    def __init__(self, engine: EngineName, redis_url: str | None,
                 env: dict[str, str]) -> None:
        self.engine = engine
        self.gateways: list[Gateway] = []  # the stack's own; extra gateways are apart
        self._writers: list[HttpWriter | RedisEngine] = []
        self._backend: Backend | None = None
        self._db: redis.Redis | None = None
        if engine == "redis":
            assert redis_url is not None
            self.processes = Stack(redis_url, env_overrides=dict(env))
        else:
            nowhere = f"redis://127.0.0.1:{free_port()}/0"  # no Redis: nothing listens
            self.processes = Stack(nowhere, env_overrides={
                "ENGINE": "memory", "EVENTS_API_KEY": EVENTS_API_KEY,
                "DRAMATIQ_BROKER_URL": nowhere, "PYTHONPATH": str(REPO), **env})

    # -- processes ----------------------------------------------------------------------
    def start(self, gateways: int, worker: bool) -> EngineStack:
        if self.engine == "redis":
            if worker:
                self.processes.start_worker()
            for _ in range(gateways):
                self.gateways.append(self.processes.add_gateway())
        elif gateways:
            gateway = self.extra_gateway("memory", {})
            gateway.start()
            self.gateways.append(gateway)
            # the CLI run by `cli` publishes through it, as on a memory-engine `up` stack
            self.processes.env_overrides[stack_env.GATEWAYS_VAR] = gateway.http
        return self

    def extra_gateway(self, name: str, overrides: dict[str, str | None]) -> Gateway:
        """A gateway (not started) with the stack's settings plus `overrides` (None
        unsets one); on the memory engine, a memory stack of its own."""
        gateway = custom_gateway(self.processes, name, overrides)
        if self.engine == "memory":
            gateway.module = MEMORY_GATEWAY
        return gateway

    def gateway(self, index: int) -> Gateway:
        return self.gateways[index % len(self.gateways)]

    @property
    def all_gateways(self) -> list[Gateway]:
        """The stack's gateways and the extra ones (every log a test may check)."""
        return self.processes.gateways

    @property
    def env(self) -> dict[str, str]:
        return self.processes.env

    @property
    def workdir(self) -> Path:
        return self.processes.workdir

    @property
    def settings(self) -> Settings:
        return settings_of(self.env)

    def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._backend is not None:
            self._backend.close()
        if self._db is not None:
            self._db.close()
        self.processes.stop()

    # -- as a client, a backend, an operator ----------------------------------------------
    def token(self, user_id: int, username: str | None = "tester", **claims: Any) -> str:
        return make_token(user_id, username, **claims)

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            if self.engine == "redis":
                self._backend = Backend(self.settings)
            else:
                self._backend = Backend.remote(self.gateways[0].http, EVENTS_API_KEY,
                                               self.settings)
        return self._backend

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`roomcast ARGS` as an operator on this stack runs it (on memory, publish,
        grant, revoke and link go through the gateway's backend API)."""
        return self.processes.cli(*args, check=check)

    async def acli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return await self.processes.acli(*args, check=check)

    def writer(self) -> Writer:
        """Appends one event at a time exactly as a worker does, bypassing the queue."""
        if self.engine == "redis":
            engine = RedisEngine(self.settings)
            self._writers.append(engine)
            return StreamWriter(engine)
        writer = HttpWriter(self.gateways[0].port)
        self._writers.append(writer)
        return writer

    # -- what the engine holds ------------------------------------------------------------
    @property
    def db(self) -> redis.Redis:
        assert self.engine == "redis", "the memory engine has no Redis"
        if self._db is None:
            self._db = redis.Redis.from_url(self.processes.redis_url)
        return self._db

    def history(self, room: str) -> list[tuple[str, dict[str, Any]]]:
        """The room's history as stored, oldest first: (id, event without its id)."""
        if self.engine == "redis":
            return [(i.decode(), json.loads(fields[b"e"]))
                    for i, fields in self.db.xrange(keys.room_history(room, SHARDS))]
        query = urllib.parse.urlencode({"room": room})
        entries = json.loads(self.gateways[0].get(f"/_test/history?{query}"))
        return [(entry_id, event) for entry_id, event in entries]

    def history_ids(self, room: str) -> list[str]:
        return [entry_id for entry_id, _ in self.history(room)]

    def message_ids(self, room: str) -> list[str]:
        """Ids of the room's `message` events (not presence events), oldest first."""
        return [entry_id for entry_id, event in self.history(room)
                if event["type"] == "message"]

    def bytes_held_by_gateway(self, stored_bytes: int) -> int:
        """Of `stored_bytes` of events appended, what the gateway process itself keeps:
        all of it on memory (the engine's histories live there), none on Redis. A
        bound on a gateway's memory growth adds this on top."""
        return stored_bytes if self.engine == "memory" else 0

    def jobs_outstanding(self) -> int:
        """Jobs queued or being applied, not yet done."""
        if self.engine == "redis":
            return jobs_outstanding(self.db)
        try:
            body = self.gateways[0].get("/readyz")
        except urllib.error.HTTPError as exc:  # not ready (503) still says the depth
            with exc:
                body = exc.read().decode()
        depth: int = json.loads(body)["queue_depth"]
        return depth

    def granted(self, user_id: int, room: str) -> bool:
        """Whether a gateway would admit the user now (the grant job has run)."""
        return self.backend.engine.access_store.granted(user_id, room)

    async def agranted(self, user_id: int, room: str) -> bool:
        return await asyncio.to_thread(self.granted, user_id, room)


def only_on_redis(stack: EngineStack, why: str) -> None:
    """Skip the memory run of a test that needs what only the Redis engine has."""
    if stack.engine != "redis":
        pytest.skip(f"Redis engine only: {why}")


class EngineStacks:
    """Makes a module's stacks on one engine; stops them all at the end."""

    def __init__(self, engine: EngineName, redis_url: str | None) -> None:
        self.engine = engine
        self._redis_url = redis_url
        self._made: list[EngineStack] = []

    def start(self, *, gateways: int = 2, worker: bool = True, redis_db: int = 0,
              **env: str) -> EngineStack:
        """A stack with `env` on top of the suite's settings. On Redis, `redis_db` keeps
        its keys apart from the module's other stacks; memory stacks share nothing."""
        url = _with_db(self._redis_url, redis_db) if self._redis_url else None
        stack = EngineStack(self.engine, url, env)
        self._made.append(stack)
        return stack.start(gateways, worker)

    def stop(self) -> None:
        for stack in reversed(self._made):
            with contextlib.suppress(Exception):
                stack.stop()


@contextlib.contextmanager
def engine_stacks(engine: EngineName, redis_url: str | None) -> Iterator[EngineStacks]:
    stacks = EngineStacks(engine, redis_url)
    try:
        yield stacks
    finally:
        stacks.stop()
