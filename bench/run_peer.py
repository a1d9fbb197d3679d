"""One run of a peer stack, end to end: its own redis-server, two gateway instances and
a publisher on free ports, the load generator against them, every process stopped by
pid at the end. Writes the load generator's JSON result to --out.

Stacks:
  sio    Socket.IO 4 + @socket.io/redis-streams-adapter (XADD/XREAD on one stream);
         the publisher is a third Node process emitting through the same adapter
  pysio  python-socketio + AsyncRedisManager (Redis pub/sub) under uvicorn

    .venv/bin/python run_peer.py sio --clients 500 --rate 200 --duration 10 --out r.json

`roomcast bench --compare-peer` runs it (installing the peers first); by hand, install
as bench/README.md says.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
STACKS = {
    "sio": {"server": ["node", "socketio/server.js", "--port", "{port}", "--redis-port", "{rp}"],
            "publisher": ["node", "socketio/publisher.js"]},
    "pysio": {"server": [PYTHON, "pysocketio/server.py", "--port", "{port}", "--redis-port",
                         "{rp}"],
              "publisher": [PYTHON, "pysocketio/publisher.py"]},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the process for port {port} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)  # poll with a deadline while it starts
    raise RuntimeError(f"nothing listens on {port} after {timeout:.0f} s")


class Processes:
    """Everything this run started, stopped in reverse order."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], log: str, cpu: str | None = None) -> subprocess.Popen[bytes]:
        if cpu is not None:
            args = ["taskset", "-c", cpu, *args]
        with (self.logs / log).open("wb") as out:
            process = subprocess.Popen(args, cwd=HERE, stdout=out, stderr=subprocess.STDOUT)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        self.started.clear()


def run(args: argparse.Namespace) -> int:
    stack = STACKS[args.stack]
    logs = HERE / "logs"
    logs.mkdir(exist_ok=True)
    cpu = "0" if args.pin else None  # --pin: everything but the load generator on CPU 0
    rooms = 1 if args.layout == "one-room" else math.ceil(args.clients / args.room_size)
    block = 1 if args.layout == "one-room" else args.room_size
    processes = Processes(logs)
    try:
        redis_port = free_port()
        redis = processes.start([args.redis_server, "--port", str(redis_port), "--bind",
                                 "127.0.0.1", "--save", "", "--appendonly", "no"],
                                "redis.log", cpu)
        wait_port(redis_port, redis)
        ports = [free_port(), free_port()]
        gateways = []
        for index, port in enumerate(ports):
            command = [part.format(port=port, rp=redis_port) for part in stack["server"]]
            gateways.append(processes.start(command, f"{args.stack}-gw{index}.log", cpu))
        for port, gateway in zip(ports, gateways, strict=True):
            wait_port(port, gateway)
        publisher = [*stack["publisher"], "--redis-port", str(redis_port), "--rooms",
                     str(rooms), "--duration", f"{args.duration:g}", "--rate", f"{args.rate:g}"]
        if args.pin:
            publisher = ["taskset", "-c", "0", *publisher]
        loadgen = [PYTHON, "loadgen.py", "--label", args.label or args.stack,
                   "--urls", ",".join(f"ws://127.0.0.1:{p}" for p in ports),
                   "--clients", str(args.clients), "--rooms", str(rooms),
                   "--clients-per-room-block", str(block),
                   "--publish-cmd", " ".join(publisher), "--max-time", f"{args.max_time:g}",
                   "--watch", f"gwA={gateways[0].pid}", "--watch", f"gwB={gateways[1].pid}",
                   "--watch", f"redis={redis.pid}", "--out", str(Path(args.out).resolve())]
        if args.pin:
            loadgen = ["taskset", "-c", "1", *loadgen]
        return subprocess.run(loadgen, cwd=HERE, timeout=args.max_time + 120,
                              check=False).returncode
    finally:
        processes.stop_all()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stack", choices=sorted(STACKS))
    p.add_argument("--clients", type=int, default=500)
    p.add_argument("--layout", choices=("one-room", "small-rooms"), default="one-room")
    p.add_argument("--room-size", type=int, default=5, help="clients per room, small-rooms")
    p.add_argument("--rate", type=float, default=200.0, help="events/s over all rooms; 0 = max")
    p.add_argument("--duration", type=float, default=10.0, help="publishing time, s")
    p.add_argument("--max-time", type=float, default=30.0,
                   help="bound on publishing + drain, from the publisher's start (s)")
    p.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server",
                   help="the redis-server binary (default: from PATH)")
    p.add_argument("--pin", action="store_true",
                   help="redis, gateways and publisher on CPU 0, the load generator on CPU 1")
    p.add_argument("--label", default="")
    p.add_argument("--out", required=True, help="where the JSON result goes")
    args = p.parse_args()
    os.chdir(HERE)
    # SIGTERM (a bench stopped or timed out) unwinds like Ctrl-C: run()'s finally
    # stops the servers this run started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise SystemExit(run(args))


if __name__ == "__main__":
    main()
