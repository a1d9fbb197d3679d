"""`roomcast up`: Redis (REDIS_URL, or an embedded one), 1 worker, 2 gateways.

Children get the settings through their environment; other shells get them
from `.roomcast/env` (see stack_env), written once the gateways answer and
removed on the way out. Ctrl-C (or SIGTERM) stops them all: gateways first
(they drain), then the worker, then Redis.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from roomcast.cli import stack_env
from roomcast.cli.embedded_redis import EmbeddedRedis
from roomcast.cli.errors import CliError
from shared.settings import Settings, SettingsError, load_settings

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


def _settings(env: dict[str, str]) -> Settings:
    """The children's settings, checked here so a bad one is one line before any start."""
    try:
        return load_settings(**{k: v for k, v in env.items() if k in Settings.model_fields})
    except SettingsError as exc:
        raise CliError(f"bad setting {exc}", code=2) from None


def _dev_token(settings: Settings) -> str:
    from gateway.auth import issue_token

    if not settings.JWT_SECRET:
        return "(none: the stack verifies JWT_PUBLIC_KEY; sign with your private key)"
    return issue_token(settings, DEV_USER_ID, DEV_USERNAME, 86400)


def _stack_values(env: dict[str, str], ports: list[int]) -> dict[str, str]:
    """What another shell needs: every roomcast setting the children run with."""
    values = {name: env[name] for name in Settings.model_fields if env.get(name)}
    values[stack_env.GATEWAYS_VAR] = ",".join(f"http://127.0.0.1:{p}" for p in ports)
    return values


def _claim_directory(directory: Path) -> None:
    """One `up` per directory: its .roomcast/env would be overwritten."""
    previous = stack_env.read(directory)
    if previous is None:
        return
    if previous.is_live():
        raise CliError(f"roomcast up already runs from this directory (pid {previous.pid}); "
                       "stop it first, or start this one in another directory")
    previous.path.unlink(missing_ok=True)  # left by an up that was killed


def run_up(ports: list[int]) -> int:
    directory = Path.cwd()
    _claim_directory(directory)
    env = dict(os.environ)
    _settings(env)  # a bad setting stops here, before anything starts
    embedded: EmbeddedRedis | None = None
    if not env.get("REDIS_URL"):
        embedded = EmbeddedRedis(appendonly=True).start()
        env["REDIS_URL"] = embedded.url
        print(f"roomcast: embedded redis-server {embedded.url} (data in {embedded.data_dir})")
    if not env.get("JWT_SECRET") and not env.get("JWT_PUBLIC_KEY"):
        env["JWT_SECRET"] = secrets.token_urlsafe(32)
        print("roomcast: JWT_SECRET not set; using a random development secret")
    env.setdefault("ACCESS_MODE", "open")
    settings = _settings(env)
    children: list[subprocess.Popen[bytes]] = [_spawn(["worker", "--processes", "1"], env)]
    for port in ports:
        children.append(_spawn(["gateway", "--host", "127.0.0.1", "--port", str(port),
                                "--instance-id", f"up-{port}"], env))
    stopping = False
    written: Path | None = None

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        if all(_wait_ready(port) for port in ports):
            written = stack_env.write(directory, _stack_values(env, ports), os.getpid())
            token = _dev_token(settings)
            print(f"roomcast: ACCESS_MODE={env['ACCESS_MODE']}; gateways on "
                  + ", ".join(f"http://127.0.0.1:{p}" for p in ports))
            print(f"roomcast: inspector  http://127.0.0.1:{ports[0]}/?token={token}")
            print(f"roomcast: websocket  ws://127.0.0.1:{ports[0]}/api/v1/ws/connect?token={token}")
            print(f"roomcast: dev token  {token}")
            print(f"roomcast: other shells here use this stack: settings in {written} (mode "
                  "0600, removed on exit); eval \"$(roomcast env)\" exports them")
            print("roomcast: Ctrl-C stops everything", flush=True)
        while not stopping:
            if any(child.poll() is not None for child in children):
                print("roomcast: a child process exited; stopping", file=sys.stderr)
                break
            time.sleep(0.2)  # supervision tick
    finally:
        if written is not None:
            stack_env.remove(directory, os.getpid())
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
