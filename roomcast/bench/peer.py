"""Side-by-side runs of the peer stacks (Socket.IO with its Redis Streams adapter,
python-socketio), alternating with roomcast's runs, from the repository's `bench/`.

The peers are not part of roomcast: their Node packages (`npm ci`) and Python
packages (a venv) are installed into `bench/node_modules` and `bench/.venv`
(git-ignored) the first time a comparison runs, and again when package-lock.json
or requirements.txt change. Each peer run is `bench/run_peer.py` with the same
clients, layout, rate and duration as ours, and the same redis-server binary.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roomcast.bench.scenario import ScenarioConfig
from roomcast.cli.children import die_with_parent
from roomcast.cli.embedded_redis import RedisNotFound, find_redis_server

PEER_STACKS = ("sio", "pysio")
# bench/ beside the roomcast package, in a clone (not in an installed wheel)
DEFAULT_PEER_DIR = Path(__file__).resolve().parents[2] / "bench"
INSTALL_TIMEOUT = 600
_STAMP = ".roomcast-installed"  # in each installed tree: a hash of what it was built from


class PeerRunner:
    def __init__(self, peer_dir: Path, stacks: list[str], cfg: ScenarioConfig,
                 log: Callable[[str], None]) -> None:
        self.dir = peer_dir
        self.stacks = stacks
        self.cfg = cfg
        self.log = log
        self.redis_server = ""
        self._results: dict[str, list[dict[str, Any]]] = {}

    @property
    def python(self) -> Path:
        return self.dir / ".venv" / "bin" / "python"

    def problem(self) -> str | None:
        """Why the comparison cannot run here (one line), or None; checked before any run."""
        unknown = [s for s in self.stacks if s not in PEER_STACKS]
        if unknown:
            return f"unknown peer stack(s) {unknown}; choose from {list(PEER_STACKS)}"
        if not (self.dir / "run_peer.py").exists():
            return (f"no peer harness in {self.dir}: --peer-dir must name the bench/ folder "
                    "of a roomcast clone")
        if "sio" in self.stacks and not (shutil.which("node") and shutil.which("npm")):
            return ("the Socket.IO peer needs Node.js 20+ and npm on PATH "
                    "(https://nodejs.org); install them, or use --peer-stacks pysio")
        try:
            self.redis_server = find_redis_server()
        except RedisNotFound as exc:
            return f"the peers need a redis-server: {exc}"
        return None

    def install(self) -> str | None:
        """Install what the chosen stacks need, once; a one-line problem, or None."""
        if "sio" in self.stacks:
            lock = self.dir / "package-lock.json"
            problem = self._install_once(
                self.dir / "node_modules", _digest(lock),
                [["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"]],
                "the peers' Node packages (npm ci)")
            if problem:
                return problem
        requirements = self.dir / "requirements.txt"
        venv = self.dir / ".venv"
        return self._install_once(
            venv, _digest(requirements),
            [[sys.executable, "-m", "venv", "--clear", str(venv)],
             [str(self.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              "-r", str(requirements)]],
            "the peers' Python packages (a venv)")

    def _install_once(self, target: Path, digest: str, commands: list[list[str]],
                      what: str) -> str | None:
        stamp = target / _STAMP
        if stamp.exists() and stamp.read_text() == digest:
            return None
        self.log(f"installing {what} into {target} (first comparison only)")
        for command in commands:
            try:
                done = subprocess.run(command, cwd=self.dir, capture_output=True, text=True,
                                      timeout=INSTALL_TIMEOUT, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"installing {what} failed: {exc}"
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                return f"installing {what} failed ({' '.join(command[:3])}): {tail[0]}"
        stamp.write_text(digest)
        return None

    def run(self, index: int) -> None:
        for stack in self.stacks:
            self.log(f"peer run {index}: {stack}")
            result = self._one(stack, index)
            result["run"] = index
            self._results.setdefault(stack, []).append(result)

    def _one(self, stack: str, index: int) -> dict[str, Any]:
        cfg = self.cfg
        results = self.dir / "results"
        results.mkdir(exist_ok=True)
        out = results / f"{stack}-run{index}.json"
        out.unlink(missing_ok=True)
        max_time = cfg.duration + cfg.drain
        command = [str(self.python), "run_peer.py", stack, "--clients", str(cfg.clients),
                   "--layout", cfg.layout, "--room-size", str(cfg.room_size),
                   "--rate", f"{cfg.rate:g}", "--duration", f"{cfg.duration:g}",
                   "--max-time", f"{max_time:g}", "--redis-server", self.redis_server,
                   "--label", f"{stack}-run{index}", "--out", str(out)]
        timeout = max_time + 240
        # SIGTERM (never SIGKILL first) lets run_peer.py stop the servers it started;
        # it gets one as well when this bench dies
        with subprocess.Popen(command, cwd=self.dir, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              preexec_fn=die_with_parent) as proc:
            try:
                output, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.communicate(timeout=30)
                return {"failed": f"peer run timed out after {timeout:.0f} s"}
        if proc.returncode != 0 or not out.exists():
            return {"failed": f"rc={proc.returncode}: {output[-800:]}"}
        result: dict[str, Any] = json.loads(out.read_text())
        result.pop("timeline", None)
        return result

    def results(self) -> dict[str, list[dict[str, Any]]]:
        return self._results


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
