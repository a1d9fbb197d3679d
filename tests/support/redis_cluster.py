"""A three-node Redis Cluster of local redis-server processes (no replicas)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from redis.cluster import RedisCluster

from roomcast.cli.embedded_redis import find_redis_server, free_port


def _redis_cli(server_binary: str) -> str:
    beside = Path(server_binary).with_name("redis-cli")
    found = str(beside) if beside.exists() else shutil.which("redis-cli")
    if not found:
        raise FileNotFoundError("redis-cli not found beside redis-server nor on PATH")
    return found


@contextmanager
def running_cluster(nodes: int = 3) -> Iterator[str]:
    binary = find_redis_server()
    workdir = Path(tempfile.mkdtemp(prefix="rc-cluster-"))
    ports = [_cluster_port() for _ in range(nodes)]
    processes = []
    try:
        for port in ports:
            node_dir = workdir / str(port)
            node_dir.mkdir()
            processes.append(subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir),
                 "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--save", "", "--appendonly", "no", "--protected-mode", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in ports:
            _wait_ping(port)
        subprocess.run([_redis_cli(binary), "--cluster", "create",
                        *[f"127.0.0.1:{p}" for p in ports], "--cluster-replicas", "0",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        _wait_cluster_ok(ports[0])
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for process in processes:
            process.kill()
            process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is a valid, free port too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def _wait_ping(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    while True:
        try:
            client.ping()
            client.close()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # poll with a deadline


def _wait_cluster_ok(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        info = redis.Redis(port=port).cluster("info")
        if info.get("cluster_state") == "ok":
            client = RedisCluster(host="127.0.0.1", port=port)
            client.set("probe", 1)
            client.close()
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"cluster not ok: {info}")
        time.sleep(0.1)  # poll with a deadline
