"""Side-by-side runs of the peer harness (shared/peers: Socket.IO with its Redis
Streams adapter, python-socketio), alternating with roomcast's runs.

The peer code is never part of the project: it runs from an installed,
writable copy (default /tmp/peers; see shared/peers/README.md):

  cp -r /work/shared/peers /tmp/peers && cd /tmp/peers && npm install \
    && python3 -m venv .venv && .venv/bin/pip install -r requirements.txt

Scenario mapping (peers/bench.py): one room at a fixed rate -> `<stack>-c`,
one room at max rate -> `<stack>-a`, small rooms -> `<stack>-b` (rooms of 5),
each with our --clients, --rate, --duration and drain bound.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roomcast.bench.scenario import ScenarioConfig

PEER_STACKS = ("sio", "pysio")


class PeerRunner:
    def __init__(self, peer_dir: Path, stacks: list[str], cfg: ScenarioConfig,
                 log: Callable[[str], None]) -> None:
        self.dir = peer_dir
        self.stacks = stacks
        self.cfg = cfg
        self.log = log
        self._results: dict[str, list[dict[str, Any]]] = {}

    @property
    def python(self) -> Path:
        return self.dir / ".venv" / "bin" / "python"

    def kind(self) -> str:
        if self.cfg.layout == "small-rooms":
            return "b"
        return "a" if self.cfg.rate == 0 else "c"

    def problem(self) -> str | None:
        """Why the peer cannot run here, or None."""
        unknown = [s for s in self.stacks if s not in PEER_STACKS]
        if unknown:
            return f"unknown peer stack(s) {unknown}; choose from {list(PEER_STACKS)}"
        if not (self.dir / "bench.py").exists():
            return (f"no peer harness in {self.dir}: cp -r /work/shared/peers {self.dir} "
                    "and install it (see bench/peer.py)")
        if not (self.dir / "node_modules").is_dir() or not self.python.exists():
            return (f"{self.dir} is not installed: cd {self.dir} && npm install && "
                    "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt")
        if self.cfg.layout == "small-rooms" and self.cfg.room_size != 5:
            return "the peer's small-rooms scenario has rooms of 5 only (--room-size 5)"
        return None

    def _label(self, stack: str, index: int) -> tuple[str, list[str]]:
        cfg = self.cfg
        max_time = cfg.duration + cfg.drain
        tag = f"-rcbench{index}"
        args = ["--runs", "1", "--rate", f"{cfg.rate:g}", "--duration", f"{cfg.duration:g}",
                "--clients", str(cfg.clients), "--max-time", f"{max_time:g}", f"--tag={tag}"]
        # peers/bench.py builds its result label the same way
        label = f"{stack}-{self.kind()}@{cfg.rate:g}-n{cfg.clients}"
        if max_time != 30.0:
            label += f"-max{max_time:g}s"
        return label + tag, args

    def run(self, index: int) -> None:
        for stack in self.stacks:
            scenario = f"{stack}-{self.kind()}"
            label, args = self._label(stack, index)
            self.log(f"peer run {index}: {scenario} {' '.join(args)}")
            result = self._one(scenario, label, args)
            result["run"] = index
            self._results.setdefault(scenario, []).append(result)

    def _one(self, scenario: str, label: str, args: list[str]) -> dict[str, Any]:
        out = self.dir / "results" / f"{label}-r1.json"
        out.unlink(missing_ok=True)
        timeout = self.cfg.duration + self.cfg.drain + 240
        try:
            proc = subprocess.run([str(self.python), "bench.py", scenario, *args], cwd=self.dir,
                                  capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return {"failed": f"peer bench timed out after {timeout:.0f} s"}
        if proc.returncode != 0 or not out.exists():
            return {"failed": f"rc={proc.returncode}: {(proc.stdout + proc.stderr)[-800:]}"}
        result: dict[str, Any] = json.loads(out.read_text())
        result.pop("timeline", None)
        return result

    def results(self) -> dict[str, list[dict[str, Any]]]:
        return self._results
