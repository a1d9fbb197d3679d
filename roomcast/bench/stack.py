"""The processes under test: an embedded Redis, N gateways and a worker, each a
subprocess of the bench with a bounded lifetime.

Every child runs in its own session (so the worker's forked processes can be
signalled as one group, by its pid), gets SIGTERM if the bench dies
(PR_SET_PDEATHSIG), and is SIGKILLed by a watchdog if the bench overstays its
lifetime bound. `stop()` always runs: SIGTERM, a bounded wait, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roomcast.cli.children import die_with_parent
from roomcast.cli.embedded_redis import find_redis_server, free_port

STRIPPED_ENV = ("WS_", "JWT_", "REDIS_", "DRAMATIQ_", "ACCESS_MODE", "ENGINE",
                "GATEWAY_INSTANCE_ID", "STREAM_SHARDS", "ROOM_HISTORY_")
STOP_WAIT_S = 12.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path | None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal_group(self, sig: int) -> None:
        # Own session: the group id is the child's pid; reaches its forked workers too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class StackConfig:
    gateways: int = 2
    redis_url: str | None = None  # reuse this Redis instead of starting one
    gateway_urls: list[str] = field(default_factory=list)  # reuse these gateways
    start_worker: bool = True
    worker_processes: int = 1
    worker_threads: int = 4
    jwt_secret: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # extra settings for our children
    lifetime_s: float = 600.0  # watchdog bound on every child
    keep_logs: bool = False


class BenchStack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.workdir = Path(tempfile.mkdtemp(prefix="roomcast-bench-"))
        self.jwt_secret = config.jwt_secret or os.environ.get("JWT_SECRET") or (
            "bench-" + secrets.token_hex(24))
        self.redis_url = config.redis_url or ""
        self.children: list[Child] = []
        self.gateway_urls: list[str] = list(config.gateway_urls)
        self._gateway_http: list[str] = []
        self._watchdog: threading.Timer | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> BenchStack:
        self._watchdog = threading.Timer(self.config.lifetime_s, self._kill_all)
        self._watchdog.daemon = True
        self._watchdog.start()
        try:
            if not self.redis_url:
                self._start_redis(timeout)
            if not self.gateway_urls:
                self._start_gateways(timeout)
            if self.config.start_worker:
                self._spawn("worker", ["worker", "--processes", str(self.config.worker_processes),
                                       "--threads", str(self.config.worker_threads)])
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Gateways first, and only once they are gone the worker, then Redis: a
        gateway drains (1012 to every client, then each one's presence and slot are
        released in Redis), which fails and floods its log if Redis is already gone."""
        gateways = [c for c in self.children if c.name.startswith("gw")]
        for stage in (gateways, [c for c in self.children if c.name == "worker"],
                      [c for c in self.children if c.name == "redis"]):
            self._stop_stage(stage)
        if self._watchdog is not None:
            self._watchdog.cancel()
        if not self.config.keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @staticmethod
    def _stop_stage(children: list[Child]) -> None:
        for child in children:
            if child.alive():
                # the leader only: Dramatiq's main process passes SIGTERM on to its
                # worker processes, and a second one makes them die without letting
                # go of their shards (the group gets SIGKILL below, for strays)
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        for child in children:
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.signal_group(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(5)
            child.signal_group(signal.SIGKILL)  # stray forked workers of the group, if any

    def _kill_all(self) -> None:
        print(f"roomcast bench: lifetime bound ({self.config.lifetime_s:.0f} s) reached; "
              "killing the stack", file=sys.stderr)
        for child in self.children:
            child.signal_group(signal.SIGKILL)

    # -- what the scenario needs ---------------------------------------------------------
    def pids(self) -> dict[str, int]:
        return {c.name: c.pid for c in self.children if c.alive()}

    def gateway_pids(self) -> dict[str, int]:
        return {c.name: c.pid for c in self.children if c.name.startswith("gw") and c.alive()}

    def child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(STRIPPED_ENV)}
        env.update({"REDIS_URL": self.redis_url, "JWT_SECRET": self.jwt_secret,
                    "ACCESS_MODE": "open", "PYTHONUNBUFFERED": "1"})
        env.update(self.config.env)
        return env

    def check_alive(self) -> list[str]:
        """Names of children that died, with their log tails (for the report's errors)."""
        return [f"{c.name} exited rc={c.process.returncode}: {c.log_tail(5)}"
                for c in self.children if not c.alive()]

    # -- starting ------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], *, roomcast: bool = True) -> Child:
        log_path = self.workdir / f"{name}.log"
        cmd = [sys.executable, "-m", "roomcast.cli.main", *argv] if roomcast else argv
        with log_path.open("ab") as log:
            process = subprocess.Popen(cmd, env=self.child_env(), stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True, preexec_fn=die_with_parent,
                                       cwd=Path(__file__).resolve().parent.parent)
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def _start_redis(self, timeout: float) -> None:
        port = free_port()
        data = self.workdir / "redis"
        data.mkdir()
        self._spawn("redis", [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1",
                              "--dir", str(data), "--save", "", "--appendonly", "no",
                              "--protected-mode", "no"], roomcast=False)
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        import redis

        client = redis.Redis(port=port, socket_connect_timeout=0.5)
        try:
            self._poll(lambda: _ping(client), timeout, "redis")
        finally:
            client.close()

    def _start_gateways(self, timeout: float) -> None:
        for i in range(1, self.config.gateways + 1):
            port = free_port()
            self._spawn(f"gw{i}", ["gateway", "--port", str(port),
                                   "--instance-id", f"bench-gw{i}-{port}"])
            self.gateway_urls.append(f"ws://127.0.0.1:{port}/api/v1/ws/connect")
            self._gateway_http.append(f"http://127.0.0.1:{port}")
        for i, http in enumerate(self._gateway_http, start=1):
            self._poll(functools.partial(_ready, http), timeout, f"gw{i}")

    def _poll(self, ready: Callable[[], bool], timeout: float, name: str) -> None:
        deadline = time.monotonic() + timeout
        child = next((c for c in self.children if c.name == name), None)
        while not ready():
            if child is not None and not child.alive():
                raise RuntimeError(f"{name} exited at start: {child.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready in {timeout:.0f} s: "
                                   f"{child.log_tail() if child else ''}")
            time.sleep(0.05)  # poll with a deadline


def _ping(client: Any) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def _ready(http: str) -> bool:
    return http_status(http + "/readyz") == 200


def http_status(url: str) -> int:
    """The HTTP status of a GET, 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0
