"""Real roomcast processes for end-to-end tests: a worker and gateways started
through the `roomcast` CLI, on free ports, against the test's own Redis."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roomcast.cli.embedded_redis import free_port

JWT_SECRET = "test-secret-" + "x" * 40
SHARDS = 4  # STREAM_SHARDS of every test stack


def base_env(redis_url: str, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WS_", "JWT_", "REDIS_"))}
    env.update({
        "REDIS_URL": redis_url,
        "JWT_SECRET": JWT_SECRET,
        "ACCESS_MODE": "acl",
        "WS_HEARTBEAT_INTERVAL": "1",
        "STREAM_SHARDS": str(SHARDS),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(overrides)
    return env


def _roomcast(*args: str) -> list[str]:
    return [sys.executable, "-m", "roomcast.cli.main", *args]


@dataclass
class Gateway:
    port: int
    instance_id: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    # what `python -m` runs with `gateway --port ...`: the roomcast CLI, or a wrapper of it
    module: str = "roomcast.cli.main"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/ws/connect"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Gateway:
        with self.log_path.open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, "gateway", "--port", str(self.port),
                 "--instance-id", self.instance_id],
                env=self.env, stdout=log, stderr=log)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"gateway {self.port} exited: {self.log_tail()}")
            if self.status("/readyz") == 200:
                return
            time.sleep(0.05)  # poll with a deadline
        raise TimeoutError(f"gateway {self.port} not ready: {self.log_tail()}")

    def status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.http + path, timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.http + path, timeout=5) as response:
            body: bytes = response.read()
            return body.decode()

    def post_events(self, body: object, api_key: str) -> tuple[int, Any]:
        """POST /api/v1/events as a backend does: the status and the JSON answer."""
        request = urllib.request.Request(self.http + "/api/v1/events",
                                         data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "X-API-Key": api_key})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def metric(self, name: str) -> float:
        """One unlabelled sample of /metrics; 0 while it has none."""
        found = re.search(rf"^{re.escape(name)} (\S+)$", self.get("/metrics"), re.M)
        return float(found[1]) if found else 0.0

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self, timeout: float = 15) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


@dataclass
class Stack:
    redis_url: str
    env_overrides: dict[str, str] = field(default_factory=dict)
    gateways: list[Gateway] = field(default_factory=list)
    worker: subprocess.Popen[bytes] | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rc-stack-")))

    @property
    def env(self) -> dict[str, str]:
        return base_env(self.redis_url, **self.env_overrides)

    def start_worker(self, threads: int = 4, modules: tuple[str, ...] = (),
                     processes: int = 1) -> subprocess.Popen[bytes]:
        with (self.workdir / "worker.log").open("ab") as log:
            self.worker = subprocess.Popen(_roomcast("worker", "--processes", str(processes),
                                                     "--threads", str(threads), *modules),
                                           env=self.env, stdout=log, stderr=log)
        return self.worker

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)
            try:
                self.worker.wait(15)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait(5)

    def add_gateway(self, instance_id: str | None = None, port: int | None = None) -> Gateway:
        port = port or free_port()
        gateway = Gateway(port=port, instance_id=instance_id or f"test-gw-{port}",
                          env=self.env, log_path=self.workdir / f"gateway-{port}.log")
        self.gateways.append(gateway)
        return gateway.start()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(_roomcast(*args), env=self.env, capture_output=True, text=True,
                              timeout=60, check=check)

    async def acli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`cli` off the event loop: an async test's WebSocket clients keep answering the
        gateways' keepalive pings while the command runs (seconds on a loaded machine)."""
        return await asyncio.to_thread(self.cli, *args, check=check)

    def stop(self) -> None:
        for gateway in self.gateways:
            if gateway.process is not None and gateway.process.poll() is None:
                gateway.process.send_signal(signal.SIGTERM)
        for gateway in self.gateways:
            if gateway.process is not None:
                try:
                    gateway.process.wait(15)
                except subprocess.TimeoutExpired:
                    gateway.kill()
        self.stop_worker()
