"""The `roomcast` command (SPEC §1)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from shared.settings import Settings, SettingsError, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        print(f"roomcast: bad setting {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roomcast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="the whole stack for a laptop")
    up.add_argument("--ports", default="8000,8001", help="gateway ports, comma separated")

    gw = sub.add_parser("gateway", help="one gateway (uvicorn)")
    gw.add_argument("--host", default="127.0.0.1")
    gw.add_argument("--port", type=int, default=8000)
    gw.add_argument("--instance-id", default=None)

    wk = sub.add_parser("worker", help="the Dramatiq worker for workers.actors")
    wk.add_argument("--processes", type=int, default=1)
    wk.add_argument("--threads", type=int, default=8)
    wk.add_argument("modules", nargs="*", metavar="MODULE",
                    help="your own actor modules, run beside roomcast's (domain jobs)")

    tk = sub.add_parser("token", help="print a development JWT")
    tk.add_argument("--user-id", type=int, required=True)
    tk.add_argument("--username", required=True)
    tk.add_argument("--ttl", type=int, default=3600)

    pb = sub.add_parser("publish", help="enqueue an event as a backend job does")
    pb.add_argument("type")
    pb.add_argument("--room", required=True)
    pb.add_argument("--data", required=True, help="JSON object")
    pb.add_argument("--sender", default="system")
    pb.add_argument("--key", default=None)

    for name in ("grant", "revoke"):
        access = sub.add_parser(name, help=f"{name} room access through the worker")
        access.add_argument("user_id", type=int)
        access.add_argument("room")

    ln = sub.add_parser("link", help="link a channel or task room to its project room")
    ln.add_argument("room")
    ln.add_argument("project_room")

    cl = sub.add_parser("client", help="interactive terminal client")
    cl.add_argument("--token", required=True)
    cl.add_argument("--url", default="ws://127.0.0.1:8000/api/v1/ws/connect")

    bn = sub.add_parser("bench", help="load generator (see `roomcast bench --help`)",
                        add_help=False)
    bn.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    argv_list = list(sys.argv[1:] if argv is None else argv)
    if argv_list[:1] == ["bench"]:
        # the load generator has its own parser; argparse's REMAINDER would
        # refuse options that start with "-"
        from roomcast.bench.main import main as bench_main

        raise SystemExit(bench_main(argv_list[1:]))
    args = _parser().parse_args(argv_list)
    command: str = args.command
    if command == "up":
        from roomcast.cli.up import run_up

        raise SystemExit(run_up([int(p) for p in args.ports.split(",")]))
    if command == "client":
        import asyncio

        from roomcast.client.terminal import run_terminal

        asyncio.run(run_terminal(args.url, args.token))
        return
    settings = _settings()
    if command == "gateway":
        # The handshake parser refuses request lines and headers over its limit with
        # 414/431 before the app sees them (8 KiB by default). Twice that lets a token
        # over our 8 KiB limit reach the auth check and get the 4401 the protocol
        # promises; it must be set before websockets is imported.
        os.environ.setdefault("WEBSOCKETS_MAX_LINE_LENGTH", "16384")
        from roomcast.cli.serve import run_gateway

        try:
            run_gateway(settings, args.host, args.port, args.instance_id)
        except SettingsError as exc:
            print(f"roomcast: bad setting {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    elif command == "worker":
        # An idle consumer waits this long (ms) per blocking pop on its wake-up list
        # (workers/broker.py: WakingConsumer); an enqueue wakes it at once.
        os.environ.setdefault("dramatiq_worker_timeout", "1000")
        # Dramatiq prefetches 2 x threads jobs per queue; our jobs take a millisecond,
        # so a deeper prefetch keeps the threads busy under load.
        os.environ.setdefault("dramatiq_queue_prefetch", "32")
        argv_worker = [sys.executable, "-m", "dramatiq", "workers.actors", *args.modules,
                       "--processes", str(args.processes), "--threads", str(args.threads)]
        os.execv(sys.executable, argv_worker)
    elif command == "token":
        from gateway.auth import issue_token

        print(issue_token(settings, args.user_id, args.username, args.ttl))
    else:
        _backend_command(settings, args)


def _backend_command(settings: Settings, args: argparse.Namespace) -> None:
    from pydantic import ValidationError

    from shared.rooms import InvalidRoom
    from workers.api import Backend

    backend = Backend(settings)
    try:
        if args.command == "publish":
            data = json.loads(args.data)
            key = backend.event(args.type, args.room, data, sender=args.sender, key=args.key)
            print(key)
        elif args.command == "grant":
            backend.grant_access(args.user_id, args.room)
        elif args.command == "revoke":
            backend.revoke_access(args.user_id, args.room)
        elif args.command == "link":
            backend.link_room(args.room, args.project_room)
    except (ValidationError, InvalidRoom, ValueError) as exc:
        print(f"roomcast: rejected: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        backend.close()


if __name__ == "__main__":
    main()
