"""A three-node Redis Cluster of local redis-server processes (no replicas)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from redis.cluster import RedisCluster

from roomcast.cli.embedded_redis import (
    RedisExited,
    ephemeral_ports,
    find_redis_server,
    stable_port,
    wait_until_answering,
)

__all__ = ["BUS_OFFSET", "cluster_port", "ephemeral_ports", "running_cluster"]


def _redis_cli(server_binary: str) -> str:
    beside = Path(server_binary).with_name("redis-cli")
    found = str(beside) if beside.exists() else shutil.which("redis-cli")
    if not found:
        raise FileNotFoundError("redis-cli not found beside redis-server nor on PATH")
    return found


# A node needs its port and its cluster bus port (port + 10000), both outside the
# kernel's ephemeral range (see stable_port).
BUS_OFFSET = 10000
START_ATTEMPTS = 5
NODE_START_TIMEOUT_S = 10.0


@contextmanager
def running_cluster(nodes: int = 3) -> Iterator[str]:
    binary = find_redis_server()
    workdir = Path(tempfile.mkdtemp(prefix="rc-cluster-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        ports = []
        for _ in range(nodes):
            port, process = _start_node(binary, workdir)
            ports.append(port)
            processes.append(process)
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


def _start_node(binary: str, workdir: Path) -> tuple[int, subprocess.Popen[bytes]]:
    """A node on fresh ports; a node that exits at start (a port taken after the
    probe) is retried on other ports instead of failing the test run."""
    for _ in range(START_ATTEMPTS):
        port = cluster_port()
        node_dir = workdir / str(port)
        node_dir.mkdir()
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir),
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--save", "", "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until_answering(port, process, NODE_START_TIMEOUT_S)
            return port, process
        except RedisExited:
            process.wait(10)
    raise RuntimeError(f"no Redis Cluster node started in {START_ATTEMPTS} tries")


def cluster_port() -> int:
    """A free port whose bus port is free too, both outside the ephemeral range when
    the host leaves room for that (else any free pair: `_start_node` retries)."""
    return stable_port(BUS_OFFSET)


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
