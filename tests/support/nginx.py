"""Debian's nginx running deploy/nginx.conf (the file compose.yaml mounts) in front
of test gateways: only the upstream addresses, the port and the paths nginx writes
to are filled in, the rest of the config runs as shipped."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "nginx.conf"
# compose.yaml's gateway services, as deploy/nginx.conf names them.
UPSTREAMS = ("gateway-a:8000", "gateway-b:8000")


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else None)
    if found is None:
        raise RuntimeError("nginx is missing: run scripts/system-deps "
                           "(apt-get install -y nginx) or scripts/test")
    return found


def render(config: str, upstreams: list[str], port: int, workdir: Path) -> str:
    """deploy/nginx.conf for this machine: upstreams, listen port, writable paths."""
    for name, address in zip(UPSTREAMS, upstreams, strict=True):
        if config.count(f"server {name} ") != 1:
            raise AssertionError(f"deploy/nginx.conf no longer names upstream {name}")
        config = config.replace(f"server {name} ", f"server {address} ")
    config, listens = re.subn(r"listen 8000;", f"listen 127.0.0.1:{port};", config)
    if listens != 1:
        raise AssertionError("deploy/nginx.conf no longer listens on 8000")
    config = config.replace("access_log /dev/stdout", f"access_log {workdir}/access.log")
    temp = "".join(f"  {kind}_temp_path {workdir}/{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return config.replace("http {\n", "http {\n" + temp, 1)


@dataclass
class Nginx:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/ws/connect"

    def start(self, upstreams: list[str], timeout: float = 10.0) -> Nginx:
        conf = self.workdir / "nginx.conf"
        conf.write_text(render(CONFIG.read_text(), upstreams, self.port, self.workdir))
        error_log = self.workdir / "error.log"
        base = [nginx_binary(), "-p", str(self.workdir), "-c", str(conf), "-e", str(error_log),
                "-g", f"daemon off; pid {self.workdir}/nginx.pid;"]
        check = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t refused deploy/nginx.conf: {check.stderr}")
        with error_log.open("ab") as errors:  # the child keeps its own copy
            self.process = subprocess.Popen(base, stdout=subprocess.DEVNULL, stderr=errors)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {error_log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)  # poll with a deadline
        raise TimeoutError(f"nginx not listening on {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: lets workers finish
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def access_log(self) -> str:
        path = self.workdir / "access.log"
        return path.read_text() if path.exists() else ""
