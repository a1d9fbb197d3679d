"""The `roomcast` command: parses the command line, resolves which stack the
command talks to, and turns every expected failure into one line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from roomcast.cli import stack_env
from roomcast.cli.args import DEFAULT_WS_PATH, build_parser
from roomcast.cli.errors import CliError, redact_url
from shared.settings import Engine, Settings, SettingsError, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise CliError(f"bad setting {exc}", code=2) from None


# Commands that talk to a stack, and so read .roomcast/env when run where `up` runs.
_STACK_COMMANDS = {"publish", "grant", "revoke", "link", "token", "client", "gateway", "worker"}


def _stack_settings() -> dict[str, str]:
    """Fill unset variables from .roomcast/env; where each stack setting comes from."""
    origins = {name: "the environment" for name in
               (*Settings.model_fields, *stack_env.CLI_VARIABLES) if os.environ.get(name)}
    stack = stack_env.read(Path.cwd())
    if stack is not None:
        for name in stack_env.fill_environ(stack, os.environ):
            origins[name] = f"{stack_env.ENV_DIR}/{stack_env.ENV_NAME}"
    return origins


def main(argv: Sequence[str] | None = None) -> None:
    argv_list = list(sys.argv[1:] if argv is None else argv)
    if argv_list[:1] == ["bench"]:
        # the load generator has its own parser
        from roomcast.bench.main import main as bench_main

        raise SystemExit(bench_main(argv_list[1:]))
    args = build_parser().parse_args(argv_list)
    try:
        _dispatch(args)
    except CliError as exc:
        print(f"roomcast: {exc.message}", file=sys.stderr)
        raise SystemExit(exc.code) from None


def _dispatch(args: argparse.Namespace) -> None:
    command: str = args.command
    if command == "up":
        from roomcast.cli.up import run_up

        raise SystemExit(run_up(args.ports, args.engine))
    if command == "env":
        _env()
        return
    origins = _stack_settings() if command in _STACK_COMMANDS else {}
    if command == "client":
        _client(args, origins)
        return
    settings = _settings()
    if command in _EVENT_TYPE_COMMANDS:
        _import_event_modules(settings)
    if command in ("gateway", "worker"):
        _refuse_on_memory_stack(command, settings)
        from_file = sorted(n for n, o in origins.items() if o.startswith(stack_env.ENV_DIR))
        if from_file:
            print(f"roomcast: {', '.join(from_file)} from {stack_env.ENV_DIR}/"
                  f"{stack_env.ENV_NAME}", file=sys.stderr)
    if command == "gateway":
        _gateway(settings, args, origins)
    elif command == "worker":
        _worker(settings, args, origins)
    elif command == "token":
        _token(settings, args, origins)
    else:
        from roomcast.cli import backend_commands

        backend_commands.run(settings, args, origins)


# Commands that check events, and so import the modules that register a backend's
# own types first (EVENT_MODULES).
_EVENT_TYPE_COMMANDS = {"gateway", "worker", "publish"}


def _import_event_modules(settings: Settings) -> None:
    """EVENT_MODULES, importable from the working directory as under uvicorn and
    dramatiq (the worker's own import, in dramatiq, looks there too); a module that
    cannot be imported is one line before anything starts."""
    if not settings.EVENT_MODULES:
        return
    from shared.events import import_event_modules

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        import_event_modules(settings.EVENT_MODULES)
    except ValueError as exc:  # the module's own registration errors are ValueErrors too
        raise CliError(" ".join(str(exc).split()), code=2) from None


def _stack_name(settings: Settings) -> str:
    if settings.ENGINE is Engine.MEMORY:
        gateways = os.environ.get(stack_env.GATEWAYS_VAR) or "its gateway's process"
        return f"the memory-engine stack at {gateways}"
    return f"the stack on {redact_url(settings.REDIS_URL)}"


def _env() -> None:
    stack = stack_env.read(Path.cwd())
    if stack is None:
        raise CliError(f"no {stack_env.ENV_DIR}/{stack_env.ENV_NAME} here: run roomcast up "
                       "in this directory first")
    stack.require_live()
    print(f"roomcast: settings of the stack in {stack_env.ENV_DIR}/{stack_env.ENV_NAME} "
          f"(roomcast up, pid {stack.pid})", file=sys.stderr)
    sys.stdout.write(stack_env.exports(stack.values))


def _client(args: argparse.Namespace, origins: dict[str, str]) -> None:
    from roomcast.client.terminal import run_terminal

    if args.url:
        urls = [args.url]  # the user named it: nothing to announce
    elif os.environ.get(stack_env.GATEWAYS_VAR):
        urls = [f"{base.strip().replace('http', 'ws', 1)}{DEFAULT_WS_PATH}"
                for base in os.environ[stack_env.GATEWAYS_VAR].split(",") if base.strip()]
        print(f"roomcast: connecting to {', '.join(urls)} "
              f"({stack_env.source(stack_env.GATEWAYS_VAR, origins)})", file=sys.stderr)
    else:
        urls = [f"ws://127.0.0.1:8000{DEFAULT_WS_PATH}"]
        print(f"roomcast: connecting to {urls[0]} (the default; no {stack_env.ENV_DIR}/"
              f"{stack_env.ENV_NAME} here)", file=sys.stderr)
    raise SystemExit(asyncio.run(run_terminal(urls, args.token)))


def _gateway(settings: Settings, args: argparse.Namespace, origins: dict[str, str]) -> None:
    # The handshake parser refuses request lines and headers over its limit with
    # 414/431 before the app sees them (8 KiB by default). Twice that lets a token
    # over our 8 KiB limit reach the auth check and get the 4401 the protocol
    # promises; it must be set before websockets is imported.
    os.environ.setdefault("WEBSOCKETS_MAX_LINE_LENGTH", "16384")
    from roomcast.cli.serve import run_gateway

    try:
        run_gateway(settings, args.host, args.port, args.instance_id, origins)
    except SettingsError as exc:
        raise CliError(f"bad setting {exc}", code=2) from None


def _refuse_on_memory_stack(command: str, settings: Settings) -> None:
    """ENGINE=memory has no worker processes; and a memory-engine `up` here serves its
    one gateway: another could not share its memory (it would be a separate, empty
    stack), so it is refused rather than started."""
    if settings.ENGINE is not Engine.MEMORY:
        return
    if command == "worker":
        raise CliError("ENGINE=memory runs its workers inside the gateway process (roomcast "
                       "gateway); roomcast worker is for ENGINE=redis", code=2)
    stack = stack_env.read(Path.cwd())
    if stack is None or stack.values.get("ENGINE") != Engine.MEMORY.value or not stack.is_live():
        return
    raise CliError(f"the memory-engine stack of roomcast up (pid {stack.pid}) runs here with its "
                   f"one gateway ({stack.values.get(stack_env.GATEWAYS_VAR, '?')}); a second "
                   "gateway cannot share that process's memory: use ENGINE=redis for more than "
                   "one gateway", code=2)


def _worker(settings: Settings, args: argparse.Namespace, origins: dict[str, str]) -> None:
    from roomcast.cli.preflight import reachable

    reachable(settings, origins, broker=True).close()
    # An idle consumer waits this long (ms) per blocking pop on its wake-up list
    # (workers/broker.py: WakingConsumer); an enqueue wakes it at once.
    os.environ.setdefault("dramatiq_worker_timeout", "1000")
    # Dramatiq prefetches 2 x threads jobs per queue; our jobs take a millisecond,
    # so a deeper prefetch keeps the threads busy under load.
    os.environ.setdefault("dramatiq_queue_prefetch", "32")
    os.execv(sys.executable, [sys.executable, "-m", "dramatiq", "workers.actors", *args.modules,
                              "--processes", str(args.processes), "--threads", str(args.threads)])


def _token(settings: Settings, args: argparse.Namespace, origins: dict[str, str]) -> None:
    from gateway.auth import issue_token

    if not settings.JWT_SECRET:
        if settings.JWT_PUBLIC_KEY:
            raise CliError("roomcast token signs with JWT_SECRET (HMAC); this stack verifies "
                           "JWT_PUBLIC_KEY: sign tokens with the matching private key instead")
        raise CliError("roomcast token needs JWT_SECRET: run it where roomcast up runs (it "
                       "writes .roomcast/env), or set JWT_SECRET")
    token = issue_token(settings, args.user_id, args.username, args.ttl)
    print(f"roomcast: signed with {stack_env.source('JWT_SECRET', origins)} "
          f"({_stack_name(settings)})", file=sys.stderr)
    print(token)


if __name__ == "__main__":
    main()
