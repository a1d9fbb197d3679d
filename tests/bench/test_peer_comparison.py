"""`roomcast bench --compare-peer` from a clone: the peer harness is in bench/, its
packages install there on first use, and a missing Node.js is one line before any
run. The tiny comparison below runs every stack for a second (about 15 s once the
peers are installed; the first run also installs them, which needs the network)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from roomcast.bench.peer import DEFAULT_PEER_DIR, PEER_STACKS, PeerRunner
from roomcast.bench.scenario import ScenarioConfig

ROOT = Path(__file__).resolve().parents[2]


def _bench(*args: str, path: str | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path} if path is not None else None
    return subprocess.run([sys.executable, "-m", "roomcast.bench.main", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_the_harness_is_in_the_repository() -> None:
    assert DEFAULT_PEER_DIR == ROOT / "bench"
    for name in ("run_peer.py", "loadgen.py", "package.json", "package-lock.json",
                 "requirements.txt", "socketio/server.js", "socketio/publisher.js",
                 "pysocketio/server.py", "pysocketio/publisher.py"):
        assert (DEFAULT_PEER_DIR / name).is_file(), name
    # npm ci refuses a lock file that does not match package.json
    package = json.loads((DEFAULT_PEER_DIR / "package.json").read_text())
    lock = json.loads((DEFAULT_PEER_DIR / "package-lock.json").read_text())
    assert lock["packages"][""]["dependencies"] == package["dependencies"]
    ignored = (DEFAULT_PEER_DIR / ".gitignore").read_text().split()
    assert {"node_modules/", ".venv/", "results/"} <= set(ignored)


def test_without_node_it_says_so_in_one_line_before_any_run(tmp_path: Path) -> None:
    result = _bench("--clients", "5", "--compare-peer", "--peer-stacks", "sio",
                    path=str(tmp_path))  # a PATH with neither node nor npm
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Node.js" in lines[0] and "npm" in lines[0], result.stderr


def test_unknown_peer_stack_is_one_line() -> None:
    result = _bench("--compare-peer", "--peer-stacks", "kafka")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"roomcast bench: --compare-peer: unknown peer stack(s) ['kafka']; choose from "
        f"{list(PEER_STACKS)}"]


@pytest.mark.timeout(150)
@pytest.mark.skipif(not (shutil.which("node") and shutil.which("npm")),
                    reason="the Socket.IO peer needs Node.js and npm")
def test_a_tiny_comparison_runs_every_peer(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = _bench("--clients", "10", "--gateways", "1", "--rate", "20", "--duration", "1",
                    "--drain", "5", "--compare-peer", "--peer-stacks", ",".join(PEER_STACKS),
                    "--no-timeline", "--quiet", "--out", str(out), timeout=140)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    for stack in PEER_STACKS:
        (run,) = report["peer"][stack]
        assert "failed" not in run, run
        assert run["connected"] == 10 and run["lost"] == 0 and run["dup"] == 0, run
        assert run["latency_ms"]["p50"] > 0
    assert "| figure | roomcast | sio | pysio |" in report["comparison"]


@pytest.mark.timeout(150)
@pytest.mark.skipif(not (shutil.which("node") and shutil.which("npm")),
                    reason="the Socket.IO peer needs Node.js and npm")
def test_a_peer_run_stopped_midway_leaves_no_process_behind(tmp_path: Path) -> None:
    # Before: SIGTERM (a bench stopped, or its timeout) ended run_peer.py at once and
    # its Redis and both Socket.IO servers ran on.
    runner = PeerRunner(DEFAULT_PEER_DIR, ["sio"], ScenarioConfig(), lambda line: None)
    assert runner.problem() is None and runner.install() is None
    run = subprocess.Popen([str(runner.python), "run_peer.py", "sio", "--clients", "5",
                            "--rate", "5", "--duration", "60", "--max-time", "90",
                            "--out", str(tmp_path / "out.json")], cwd=DEFAULT_PEER_DIR,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:  # the servers and the load generator are up: a run in its middle
            children = psutil.Process(run.pid).children(recursive=True)
            if any("loadgen.py" in " ".join(c.cmdline()) for c in children):
                break
            assert time.monotonic() < deadline and run.poll() is None, "the run never started"
            time.sleep(0.2)  # poll interval while the peer stack starts
        servers = [c for c in children if "server.js" in " ".join(c.cmdline())]
        assert len(servers) == 2
        run.send_signal(signal.SIGTERM)
        run.wait(60)
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == [], [p.cmdline() for p in alive]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
