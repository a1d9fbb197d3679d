"""`roomcast up`: Redis (REDIS_URL, or an embedded one), 1 worker, 2 gateways; or,
with `--engine memory`, one gateway process and nothing else (no Redis, no worker:
the memory engine runs its workers in the gateway's threads).

Children get the settings through their environment; other shells get them
from `.roomcast/env` (see stack_env), written once the gateways answer and
removed on the way out. Ctrl-C (or SIGTERM) stops them all: gateways first
(they drain), then the worker, then Redis.

Before starting anything, `up` makes sure the ports are free and no other
`up` runs from this directory; a gateway counts as ready only when /healthz
answers with the instance id this `up` gave it, so another stack still
holding a port is never mistaken for ours.
"""

from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path

from roomcast.cli import stack_env
from roomcast.cli.embedded_redis import EmbeddedRedis, RedisNotFound
from roomcast.cli.errors import CliError
from roomcast.cli.preflight import bind_port, reachable
from roomcast.cli.supervisor import Supervisor
from shared.settings import Engine, Settings, SettingsError, load_settings

DEV_USER_ID = 1
DEV_USERNAME = "dev"
DEFAULT_PORTS = (8000, 8001)
REDIS_SETTINGS = ("REDIS_URL", "DRAMATIQ_BROKER_URL", "REDIS_CLUSTER")


def _settings(env: dict[str, str]) -> Settings:
    """The children's settings, checked here so a bad one is one line before any start."""
    try:
        return load_settings(**{k: v for k, v in env.items() if k in Settings.model_fields})
    except SettingsError as exc:
        raise CliError(f"bad setting {exc}", code=2) from None


def _claim_directory(directory: Path) -> None:
    """One `up` per directory: its .roomcast/env would be overwritten."""
    previous = stack_env.read(directory)
    if previous is None:
        return
    if previous.is_live():
        raise CliError(f"roomcast up already runs from this directory (pid {previous.pid}); "
                       "stop it first, or start this one in another directory")
    previous.path.unlink(missing_ok=True)  # left by an up that was killed


def _check_ports(ports: list[int]) -> None:
    for port in ports:
        bind_port("127.0.0.1", port).close()


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


def _ports(ports: list[int] | None, engine: Engine) -> list[int]:
    if engine is Engine.REDIS:
        return ports or list(DEFAULT_PORTS)
    if ports and len(ports) > 1:
        raise CliError("the memory engine serves one gateway (its events live in that "
                       "process's memory, which a second gateway cannot share): give one "
                       "port, e.g. --ports 8000, or use ENGINE=redis for more", code=2)
    return ports or list(DEFAULT_PORTS[:1])


def _start_redis(env: dict[str, str]) -> EmbeddedRedis | None:
    """REDIS_URL when set (it must answer), else an embedded redis-server."""
    if env.get("REDIS_URL"):
        reachable(_settings(env), {"REDIS_URL": "the environment",
                                   "DRAMATIQ_BROKER_URL": "the environment"}).close()
        return None
    try:
        embedded = EmbeddedRedis(appendonly=True, own_group=True).start()
    except RedisNotFound as exc:
        raise CliError(str(exc)) from None
    env["REDIS_URL"] = embedded.url
    print(f"roomcast: embedded redis-server {embedded.url} (data in {embedded.data_dir})")
    return embedded


def _without_redis(env: dict[str, str]) -> None:
    """The memory engine uses no Redis: its settings would only mislead other shells."""
    ignored = [name for name in REDIS_SETTINGS if env.pop(name, None)]
    if ignored:
        print(f"roomcast: --engine memory uses no Redis; ignoring {', '.join(ignored)}")


def _dev_defaults(env: dict[str, str]) -> None:
    if not env.get("JWT_SECRET") and not env.get("JWT_PUBLIC_KEY"):
        env["JWT_SECRET"] = secrets.token_urlsafe(32)
        print("roomcast: JWT_SECRET not set; using a random development secret")
    env.setdefault("ACCESS_MODE", "open")
    # the backend API, so `publish --url` and backends in other processes reach the stack
    # (the only way into a memory engine from outside its process)
    if not env.get("EVENTS_API_KEY"):
        env["EVENTS_API_KEY"] = secrets.token_urlsafe(32)


def run_up(ports: list[int] | None, engine_name: str | None) -> int:
    env = dict(os.environ)
    if engine_name:
        env["ENGINE"] = engine_name  # the flag wins over the environment
    engine = _settings(env).ENGINE  # a bad setting stops here, before anything starts
    env["ENGINE"] = engine.value  # explicit in .roomcast/env: other shells know the engine
    ports = _ports(ports, engine)
    directory = Path.cwd()
    _claim_directory(directory)
    _check_ports(ports)
    supervisor = Supervisor(env)
    signal.signal(signal.SIGINT, supervisor.on_signal)
    signal.signal(signal.SIGTERM, supervisor.on_signal)
    embedded: EmbeddedRedis | None = None
    written = False
    try:
        if engine is Engine.REDIS:
            embedded = _start_redis(env)
        else:
            _without_redis(env)
        _dev_defaults(env)
        settings = _settings(env)
        if engine is Engine.REDIS:  # the memory engine runs its workers in the gateway
            supervisor.spawn("worker", ["worker", "--processes", "1"])
        # a fresh id per run: a gateway left by another stack cannot answer with it
        run_id = secrets.token_hex(3)
        instances = {port: f"up-{port}-{run_id}" for port in ports}
        for port, instance_id in instances.items():
            supervisor.spawn(f"gateway on port {port}",
                             ["gateway", "--host", "127.0.0.1", "--port", str(port),
                              "--instance-id", instance_id])
        for port, instance_id in instances.items():
            supervisor.wait_ready(port, instance_id)
        if supervisor.stopping:
            return 0
        path = stack_env.write(directory, _stack_values(env, ports), os.getpid())
        written = True
        _banner(settings, ports, path)
        return supervisor.supervise()
    finally:
        if written:
            stack_env.remove(directory, os.getpid())
        supervisor.stop()
        if embedded is not None:
            embedded.cleanup()


def _banner(settings: Settings, ports: list[int], path: Path) -> None:
    token = _dev_token(settings)
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    if settings.ENGINE is Engine.MEMORY:
        print("roomcast: engine memory: one gateway process, no Redis; its workers run "
              "inside it, and everything is gone when it stops")
    print(f"roomcast: ACCESS_MODE={settings.ACCESS_MODE.value}; "
          f"{'gateways' if len(urls) > 1 else 'gateway'} on {', '.join(urls)}")
    print(f"roomcast: inspector  {urls[0]}/?token={token}")
    print(f"roomcast: websocket  ws://127.0.0.1:{ports[0]}/api/v1/ws/connect?token={token}")
    print(f"roomcast: dev token  {token}")
    print(f"roomcast: backend API  POST {urls[0]}/api/v1/events with header X-API-Key: "
          "EVENTS_API_KEY (in the file below)")
    print(f"roomcast: other shells in this directory use this stack: settings in {path} "
          "(mode 0600, removed on exit); eval \"$(roomcast env)\" exports them")
    print("roomcast: Ctrl-C stops everything", flush=True)
