"""`roomcast up`: Redis (REDIS_URL, or an embedded one), 1 worker, 2 gateways.

Children get the settings through their environment; Ctrl-C (or SIGTERM)
stops them all: gateways first (they drain), then the worker, then Redis.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request

from roomcast.cli.embedded_redis import EmbeddedRedis

DEV_USER_ID = 1
DEV_USERNAME = "dev"


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "roomcast.cli.main", *args], env=env)


def _wait_ready(port: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return True
        except OSError:
            time.sleep(0.2)  # poll with a deadline while the gateway boots
    return False


def run_up(ports: list[int]) -> int:
    env = dict(os.environ)
    embedded: EmbeddedRedis | None = None
    if not env.get("REDIS_URL"):
        embedded = EmbeddedRedis(appendonly=True).start()
        env["REDIS_URL"] = embedded.url
        print(f"roomcast: embedded redis-server {embedded.url} (data in {embedded.data_dir})")
    if not env.get("JWT_SECRET") and not env.get("JWT_PUBLIC_KEY"):
        env["JWT_SECRET"] = secrets.token_urlsafe(32)
        print("roomcast: JWT_SECRET not set; using a random development secret")
    env.setdefault("ACCESS_MODE", "open")
    children: list[subprocess.Popen[bytes]] = [_spawn(["worker", "--processes", "1"], env)]
    for port in ports:
        children.append(_spawn(["gateway", "--host", "127.0.0.1", "--port", str(port),
                                "--instance-id", f"up-{port}"], env))
    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        if all(_wait_ready(port) for port in ports):
            token = subprocess.run(
                [sys.executable, "-m", "roomcast.cli.main", "token", "--user-id", str(DEV_USER_ID),
                 "--username", DEV_USERNAME, "--ttl", "86400"],
                env=env, capture_output=True, text=True, check=False).stdout.strip()
            print(f"roomcast: ACCESS_MODE={env['ACCESS_MODE']}; gateways on "
                  + ", ".join(f"http://127.0.0.1:{p}" for p in ports))
            print(f"roomcast: inspector  http://127.0.0.1:{ports[0]}/?token={token}")
            print(f"roomcast: websocket  ws://127.0.0.1:{ports[0]}/api/v1/ws/connect?token={token}")
            print(f"roomcast: dev token  {token}")
            print("roomcast: Ctrl-C stops everything", flush=True)
        while not stopping:
            if any(child.poll() is not None for child in children):
                print("roomcast: a child process exited; stopping", file=sys.stderr)
                break
            time.sleep(0.2)  # supervision tick
    finally:
        for child in reversed(children):  # gateways drain first, then the worker
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in reversed(children):
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
        if embedded is not None:
            embedded.cleanup()
    return 0
