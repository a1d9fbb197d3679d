"""The `roomcast` command: parses the command line, resolves which stack the
command talks to, and turns every expected failure into one line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from roomcast.cli.args import DEFAULT_WS_PATH, build_parser
from roomcast.cli.errors import CliError
from shared.settings import Settings, SettingsError, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise CliError(f"bad setting {exc}", code=2) from None


def _origins() -> dict[str, str]:
    return {name: "the environment" for name in ("REDIS_URL", "DRAMATIQ_BROKER_URL")
            if os.environ.get(name)}


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

        raise SystemExit(run_up(args.ports))
    if command == "client":
        from roomcast.client.terminal import run_terminal

        asyncio.run(run_terminal(args.url or f"ws://127.0.0.1:8000{DEFAULT_WS_PATH}",
                                 args.token))
        return
    settings = _settings()
    if command == "gateway":
        _gateway(settings, args)
    elif command == "worker":
        _worker(settings, args)
    elif command == "token":
        _token(settings, args)
    else:
        from roomcast.cli import backend_commands

        backend_commands.run(settings, args, _origins())


def _gateway(settings: Settings, args: argparse.Namespace) -> None:
    # The handshake parser refuses request lines and headers over its limit with
    # 414/431 before the app sees them (8 KiB by default). Twice that lets a token
    # over our 8 KiB limit reach the auth check and get the 4401 the protocol
    # promises; it must be set before websockets is imported.
    os.environ.setdefault("WEBSOCKETS_MAX_LINE_LENGTH", "16384")
    from roomcast.cli.serve import run_gateway

    try:
        run_gateway(settings, args.host, args.port, args.instance_id, _origins())
    except SettingsError as exc:
        raise CliError(f"bad setting {exc}", code=2) from None


def _worker(settings: Settings, args: argparse.Namespace) -> None:
    from roomcast.cli.preflight import reachable

    reachable(settings, _origins(), broker=True).close()
    # An idle consumer waits this long (ms) per blocking pop on its wake-up list
    # (workers/broker.py: WakingConsumer); an enqueue wakes it at once.
    os.environ.setdefault("dramatiq_worker_timeout", "1000")
    # Dramatiq prefetches 2 x threads jobs per queue; our jobs take a millisecond,
    # so a deeper prefetch keeps the threads busy under load.
    os.environ.setdefault("dramatiq_queue_prefetch", "32")
    os.execv(sys.executable, [sys.executable, "-m", "dramatiq", "workers.actors", *args.modules,
                              "--processes", str(args.processes), "--threads", str(args.threads)])


def _token(settings: Settings, args: argparse.Namespace) -> None:
    from gateway.auth import issue_token

    if not settings.JWT_SECRET:
        if settings.JWT_PUBLIC_KEY:
            raise CliError("roomcast token signs with JWT_SECRET (HMAC); this stack verifies "
                           "JWT_PUBLIC_KEY: sign tokens with the matching private key instead")
        raise CliError("roomcast token needs JWT_SECRET: run it where roomcast up runs (it "
                       "writes .roomcast/env), or set JWT_SECRET")
    print(issue_token(settings, args.user_id, args.username, args.ttl))


if __name__ == "__main__":
    main()
