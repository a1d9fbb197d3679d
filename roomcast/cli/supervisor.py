"""The children of one `roomcast up`: started in order, watched, stopped in reverse.

A gateway counts as ready only when /healthz answers with the instance id this
`up` gave it, so another stack still holding a port is never mistaken for ours.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from types import FrameType

from roomcast.cli.children import die_with_parent
from roomcast.cli.errors import CliError

READY_TIMEOUT = 30.0


def _instance_on(port: int) -> str | None:
    """The instance id answering /healthz on the port, or None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as reply:
            body = json.loads(reply.read())
    except (OSError, ValueError):
        return None
    return str(body.get("instance")) if isinstance(body, dict) else ""


class Supervisor:
    """The children of one `up`, started in order and stopped in reverse."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stopping = False

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        child = subprocess.Popen([sys.executable, "-m", "roomcast.cli.main", *args],
                                 env=self.env, start_new_session=True,
                                 preexec_fn=die_with_parent)
        self.children.append((name, child))
        return child

    def exited(self) -> str | None:
        for name, child in self.children:
            if child.poll() is not None:
                return f"the {name} exited (code {child.returncode})"
        return None

    def wait_ready(self, port: int, instance_id: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.stopping:
            problem = self.exited()
            if problem:
                raise CliError(f"{problem} while starting; see its messages above")
            answering = _instance_on(port)
            if answering == instance_id:
                return
            if answering is not None:
                raise CliError(f"port {port} answers as gateway {answering!r}, not the one this "
                               "roomcast up started: is another stack running?")
            if time.monotonic() > deadline:
                raise CliError(f"the gateway on port {port} did not answer within "
                               f"{READY_TIMEOUT:.0f} s")
            time.sleep(0.2)  # poll with a deadline while the gateway boots

    def supervise(self) -> int:
        while not self.stopping:
            problem = self.exited()
            if problem:
                print(f"roomcast: {problem}; stopping the stack", file=sys.stderr)
                return 1
            time.sleep(0.2)  # supervision tick
        return 0

    def stop(self) -> None:
        for _, child in reversed(self.children):  # gateways drain first, then the worker
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for _, child in reversed(self.children):
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
