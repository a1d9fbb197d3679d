"""`python -m taskboard` (what examples/taskboard/run calls): the whole example
with one command.

It starts, in this order: Redis (REDIS_URL if set, else roomcast's embedded
redis-server on a free port), one worker running roomcast's actors and the
taskboard's (`roomcast worker taskboard.actors`), the gateways, and the
backend; waits until each is ready; prints the URL to open. Ctrl-C (SIGINT) or
SIGTERM stops them in reverse order, so the gateways drain while Redis is still
there.

Every child gets its settings through the environment: roomcast's (REDIS_URL,
JWT_SECRET, ACCESS_MODE=acl, EVENT_MODULES=taskboard.events so workers and
gateways know `comment.added`, WS_ALLOWED_ORIGINS = the backend's origin) and
the taskboard's (TASKBOARD_DB, TASKBOARD_GATEWAYS).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from roomcast.cli.embedded_redis import EmbeddedRedis, RedisNotFound
from shared.settings import Settings, SettingsError, load_settings
from taskboard import config

HERE = Path(__file__).resolve().parents[1]  # examples/taskboard
DEFAULT_DB = HERE / ".data" / "taskboard.db"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


class RunError(Exception):
    """Something the user can fix: the message is one line saying what."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    ready_url: str | None = None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="the backend's port (8080)")
    parser.add_argument("--gateway-ports", default="8000,8001",
                        help="gateway ports, comma separated (8000,8001)")
    parser.add_argument("--db", type=Path, default=DEFAULT_DB,
                        help=f"the SQLite file (default {DEFAULT_DB.relative_to(HERE.parents[1])})")
    return parser


def _ports(text: str) -> list[int]:
    try:
        ports = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise RunError(f"--gateway-ports: {text!r} is not a comma list of ports") from None
    if not ports or any(not 0 < p < 65536 for p in ports):
        raise RunError(f"--gateway-ports: {text!r} is not a comma list of ports")
    return ports


def _check_free(host: str, port: int, option: str) -> None:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            raise RunError(f"port {port} on {host} is busy (roomcast up or an earlier run?); "
                           f"stop it or pass {option}") from None


def _environment(args: argparse.Namespace, gateway_ports: list[int]) -> dict[str, str]:
    """The children's settings (REDIS_URL is added once Redis runs)."""
    env = dict(os.environ)
    origin_hosts = {args.host, "localhost", "127.0.0.1"} if args.host == "127.0.0.1" \
        else {args.host}
    modules = [m for m in env.get("EVENT_MODULES", "").split(",") if m.strip()]
    env.update({
        "ACCESS_MODE": env.get("ACCESS_MODE", "acl"),  # grants matter here
        "EVENT_MODULES": ",".join(dict.fromkeys([*modules, "taskboard.events"])),
        "WS_ALLOWED_ORIGINS": env.get("WS_ALLOWED_ORIGINS") or ",".join(
            f"http://{h}:{args.port}" for h in sorted(origin_hosts)),
        "TASKBOARD_DB": str(args.db.resolve()),
        "TASKBOARD_GATEWAYS": ",".join(f"http://{args.host}:{p}" for p in gateway_ports),
        "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p),
        "PYTHONUNBUFFERED": "1",
    })
    if not env.get("JWT_SECRET") and not env.get("JWT_PUBLIC_KEY"):
        env["JWT_SECRET"] = secrets.token_urlsafe(32)  # the backend signs, gateways verify
    if not env.get("JWT_SECRET"):
        raise RunError("the backend issues tokens with JWT_SECRET (HMAC); unset JWT_PUBLIC_KEY")
    # a bad setting is one line now, before anything starts, not a traceback later
    try:
        config.load(env)
        load_settings(**{k: v for k, v in env.items() if k in Settings.model_fields})
    except (config.ConfigError, SettingsError) as exc:
        raise RunError(f"bad setting {exc}") from None
    return env


@contextmanager
def _ctrl_c_blocked() -> Iterator[None]:
    """Processes started in here do not get the terminal's Ctrl-C: a blocked signal
    stays blocked across exec. Used for redis-server, which would otherwise quit at
    once, before the gateways drain."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _spawn(name: str, argv: list[str], env: dict[str, str], ready_url: str | None = None
           ) -> Child:
    # Its own process group: Ctrl-C reaches only this runner, which stops the children
    # in order (the backend, the gateways, the worker, then Redis).
    process = subprocess.Popen([sys.executable, *argv], env=env, process_group=0)
    return Child(name, process, ready_url)


def _ready(child: Child) -> bool:
    if child.ready_url is None:
        return True
    try:
        with urllib.request.urlopen(child.ready_url, timeout=2) as response:
            body = json.loads(response.read() or b"{}")
    except (OSError, urllib.error.HTTPError, ValueError):
        return False
    # a gateway's /readyz also counts live workers: ready once the worker consumes
    return "workers" not in body or int(body["workers"]) >= 1


def _wait_ready(children: list[Child], stopping: list[bool]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    waiting = list(children)
    while waiting and not stopping:
        for child in list(waiting):
            code = child.process.poll()
            if code is not None:
                raise RunError(f"{child.name} exited with code {code} while starting; "
                               "its output is above")
            if _ready(child):
                waiting.remove(child)
        if time.monotonic() > deadline:
            names = ", ".join(c.name for c in waiting)
            raise RunError(f"not ready after {READY_TIMEOUT:.0f} s: {names}")
        time.sleep(0.1)  # poll with a deadline while the processes boot


def _stop(children: list[Child]) -> None:
    for child in reversed(children):  # backend, gateways, then the worker
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
            try:
                child.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"taskboard: {child.name} did not stop in {STOP_TIMEOUT:.0f} s; killing it",
                      file=sys.stderr)
                child.process.kill()
                child.process.wait()


def run(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    gateway_ports = _ports(args.gateway_ports)
    _check_free(args.host, args.port, "--port")
    for port in gateway_ports:
        _check_free(args.host, port, "--gateway-ports")

    stopping: list[bool] = []

    def _on_signal(signum: int, frame: object) -> None:
        stopping.append(True)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)

    env = _environment(args, gateway_ports)
    embedded: EmbeddedRedis | None = None
    children: list[Child] = []
    try:
        redis_url = env.get("REDIS_URL")
        if not redis_url:
            with _ctrl_c_blocked():
                try:
                    embedded = EmbeddedRedis(appendonly=True).start()
                except RedisNotFound:
                    raise RunError("no Redis to start: install redis-server (apt install "
                                   "redis-server, brew install redis), or pip install "
                                   "'roomcast[embedded-redis]', or set REDIS_URL") from None
            redis_url = env["REDIS_URL"] = embedded.url
        # roomcast's worker, running our actor module beside its own
        children.append(_spawn("the worker", ["-m", "roomcast.cli.main", "worker", "--processes",
                                              "1", "--threads", "4", "taskboard.actors"], env))
        for port in gateway_ports:
            children.append(_spawn(
                f"the gateway on :{port}",
                ["-m", "roomcast.cli.main", "gateway", "--host", args.host, "--port", str(port),
                 "--instance-id", f"taskboard-{port}"],
                env, f"http://{args.host}:{port}/readyz"))
        children.append(_spawn(
            "the backend",
            ["-m", "uvicorn", "--factory", "taskboard.app:create_app", "--host", args.host,
             "--port", str(args.port), "--log-level", "warning"],
            env, f"http://{args.host}:{args.port}/healthz"))
        _wait_ready(children, stopping)
        if not stopping:
            _banner(args, gateway_ports, redis_url, embedded is not None)
        while not stopping:
            exited = next((c for c in children if c.process.poll() is not None), None)
            if exited is not None:
                raise RunError(f"{exited.name} exited with code {exited.process.returncode}; "
                               "stopping")
            time.sleep(0.2)  # supervision tick
        return 0
    finally:
        print("taskboard: stopping", file=sys.stderr, flush=True)
        _stop(children)
        if embedded is not None:
            embedded.cleanup()


def _banner(args: argparse.Namespace, gateway_ports: list[int], redis_url: str,
            embedded: bool) -> None:
    gateways = ", ".join(f"ws://{args.host}:{p}" for p in gateway_ports)
    redis_note = "embedded, data deleted on exit" if embedded else "from REDIS_URL"
    print(f"taskboard: gateways {gateways}; worker: workers.actors + taskboard.actors\n"
          f"taskboard: Redis {redis_url} ({redis_note}); database {args.db}\n"
          f"taskboard: open http://{args.host}:{args.port}  (log in with any name and "
          "password: a new name registers)\n"
          "taskboard: Ctrl-C stops everything", flush=True)


def main() -> None:
    try:
        raise SystemExit(run())
    except RunError as exc:
        print(f"taskboard: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
