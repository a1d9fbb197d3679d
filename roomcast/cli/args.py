"""The `roomcast` command line: one parser per command, errors as one line."""

from __future__ import annotations

import argparse
from typing import NoReturn

DESCRIPTION = """roomcast: real-time rooms for Python backends.

Run `roomcast up` for a whole stack on this machine; in another shell in the
same directory, the other commands use that stack (see `roomcast env`).
Every setting is an environment variable (REDIS_URL, JWT_SECRET, ACCESS_MODE,
...); a bad value is reported in one line naming the variable."""

DEFAULT_WS_PATH = "/api/v1/ws/connect"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (with a pointer to --help), like
    every other mistake the CLI reports."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def token_text(text: str) -> str:
    # an unset $TOKEN arrives as "": no gateway would take it
    if not text.strip():
        raise argparse.ArgumentTypeError("the token is empty (get one with roomcast token, "
                                         "or from roomcast up's output)")
    return text


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}")
    return value


def port_list(text: str) -> list[int]:
    ports = [port_number(part.strip()) for part in text.split(",") if part.strip()]
    if not ports or 0 in ports or len(set(ports)) != len(ports):
        raise argparse.ArgumentTypeError(f"expected distinct ports like 8000,8001, got {text!r}")
    return ports


def _gateway_url_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None, metavar="http://HOST:PORT",
                        help="queue through this gateway's backend API (with EVENTS_API_KEY) "
                             "instead of straight to Redis; works for either engine")
    parser.add_argument("--queue-anyway", action="store_true",
                        help="queue in Redis even when no roomcast worker is alive there "
                             "(e.g. while workers restart); the job waits for one")


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="roomcast", description=DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="the whole stack for a laptop (Redis, a worker, gateways)")
    up.add_argument("--engine", choices=["redis", "memory"], default=None,
                    help="redis (default, or ENGINE): Redis, a worker and gateways; memory: "
                         "one gateway process, no Redis")
    up.add_argument("--ports", type=port_list, default=None,
                    help="gateway ports, comma separated (default 8000,8001; 8000 with "
                         "--engine memory, which serves one gateway)")

    sub.add_parser("env", help="print the settings `roomcast up` wrote here, as export lines")

    gw = sub.add_parser("gateway", help="one gateway (uvicorn)")
    gw.add_argument("--host", default="127.0.0.1")
    gw.add_argument("--port", type=port_number, default=8000)
    gw.add_argument("--instance-id", default=None)

    wk = sub.add_parser("worker", help="the Dramatiq worker for workers.actors")
    wk.add_argument("--processes", type=positive_int, default=1)
    wk.add_argument("--threads", type=positive_int, default=8)
    wk.add_argument("modules", nargs="*", metavar="MODULE",
                    help="your own actor modules, run beside roomcast's (domain jobs)")

    tk = sub.add_parser("token", help="print a development JWT signed with JWT_SECRET")
    tk.add_argument("--user-id", type=positive_int, required=True)
    tk.add_argument("--username", required=True)
    tk.add_argument("--ttl", type=positive_int, default=3600, help="lifetime, s (default 3600)")

    pb = sub.add_parser("publish", help="enqueue an event as a backend job does")
    pb.add_argument("type", help="event type, e.g. task.created")
    pb.add_argument("--room", required=True)
    pb.add_argument("--data", required=True, help="the event's data, a JSON object")
    pb.add_argument("--sender", default="system")
    pb.add_argument("--key", default=None, help="idempotency key (default: a fresh one)")
    _gateway_url_option(pb)

    for name in ("grant", "revoke"):
        access = sub.add_parser(name, help=f"{name} room access through the worker")
        access.add_argument("user_id", type=positive_int)
        access.add_argument("room")
        _gateway_url_option(access)

    ln = sub.add_parser("link", help="let a project's members into a channel or task room")
    ln.add_argument("room")
    ln.add_argument("project_room")
    _gateway_url_option(ln)

    cl = sub.add_parser("client", help="interactive terminal client")
    cl.add_argument("--token", type=token_text, required=True)
    cl.add_argument("--url", default=None,
                    help="gateway WebSocket URL (default: the stack's first gateway, or "
                         f"ws://127.0.0.1:8000{DEFAULT_WS_PATH})")

    sub.add_parser("bench", help="load generator (see `roomcast bench --help`)", add_help=False)
    return parser
