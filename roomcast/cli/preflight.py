"""Checks a command makes before it relies on the stack, so that a mistake is one
line naming what is wrong instead of a traceback (or a silent success against
the wrong Redis)."""

from __future__ import annotations

import errno
import socket
import sys

import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from roomcast.cli import stack_env
from roomcast.cli.errors import CliError, redact_url
from shared.settings import Settings

CONNECT_TIMEOUT = 2.0


def _client(settings: Settings, url: str) -> redis.Redis:
    # no retries: an unreachable Redis is reported now, not after a backoff
    if settings.REDIS_CLUSTER and url == settings.REDIS_URL:  # Dramatiq's is never a cluster
        cluster: redis.Redis = RedisCluster.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT)
        return cluster
    return redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT,
                                socket_timeout=CONNECT_TIMEOUT)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.rstrip(".")


def reachable(settings: Settings, origins: dict[str, str], *, broker: bool = False
              ) -> redis.Redis:
    """A client of REDIS_URL once it answers; with `broker`, the Dramatiq broker's Redis
    (DRAMATIQ_BROKER_URL) must answer too.

    `origins` says where each setting came from, for the message."""
    targets = [("REDIS_URL", settings.REDIS_URL)]
    if broker and settings.broker_url != settings.REDIS_URL:
        targets.append(("DRAMATIQ_BROKER_URL", settings.broker_url))
    clients: list[redis.Redis] = []
    try:
        for name, url in targets:
            try:
                client = _client(settings, url)
                clients.append(client)
                client.ping()
            except (RedisError, RedisClusterException, OSError) as exc:
                raise CliError(f"cannot reach Redis at {redact_url(url)} "
                               f"({stack_env.source(name, origins)}): {_reason(exc)}") from None
    except CliError:
        for client in clients:
            client.close()
        raise
    for client in clients[1:]:
        client.close()
    return clients[0]


def check_worker(live: int, url: str, *, queue_anyway: bool) -> None:
    """A Redis with no live roomcast worker is most often the wrong Redis (another
    stack, another app): queue nothing there, in one line. `--queue-anyway` queues
    (a worker may be on its way), with a warning."""
    if live:
        return
    where = redact_url(url)
    if not queue_anyway:
        raise CliError(f"nothing queued: no live roomcast worker on {where} (is it the "
                       "right Redis?); start one with `roomcast worker`, or pass "
                       "--queue-anyway to queue the job for a worker to come")
    print(f"roomcast: warning: no live roomcast worker on {where}; the job waits in the "
          "queue until one starts (roomcast worker)", file=sys.stderr)


def bind_port(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or one line naming the port.

    Bound here, before uvicorn starts the app: uvicorn itself binds after the
    app's startup and then hangs in shutdown when the port is taken."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror}", code=2) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CliError(f"port {port} on {host} is already in use (another gateway, or "
                           "roomcast up, still running?)") from None
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock
