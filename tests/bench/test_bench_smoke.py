"""`roomcast bench` end to end: a short real run against its own stack
(embedded Redis, one gateway, one worker), bounded well under a minute."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 20


@pytest.mark.timeout(90)
def test_short_run_reports_every_figure_and_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    png = tmp_path / "chart.png"
    proc = subprocess.run(
        [sys.executable, "-m", "roomcast.bench.main", "--clients", str(CLIENTS), "--gateways", "1",
         "--duration", "2", "--rate", "50", "--drain", "10", "--out", str(out),
         "--png", str(png), "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]

    report = json.loads(out.read_text())
    assert report["scenario"]["clients"] == CLIENTS
    assert report["environment"]["cpu_model"] not in ("", "unknown")  # whose figures these are
    assert set(report["summary"]) >= {"delivered", "lost", "dup", "latency_ms.p50"}
    (run,) = report["runs"]
    for key in ("published", "delivered", "delivered_per_s", "latency_ms", "lost", "dup",
                "cpu_pct", "peak_rss_mb", "mem_per_conn_kb", "timeline"):
        assert key in run, key
    for key in ("p50", "p99", "max"):
        assert run["latency_ms"][key] > 0
    for proc_name in ("redis", "gw1", "worker", "loadgen", "publisher"):
        assert proc_name in run["cpu_pct"]["publish"], proc_name
        assert run["peak_rss_mb"][proc_name] > 0, proc_name
    assert run["mem_per_conn_kb"]["gw1"] is not None

    events = run["published"]["events"]
    # Paced at 50/s for 2 s: never more than 100 (the 101st would be due at the end);
    # fewer only if a loaded machine kept the publisher from catching up in time.
    assert 0 < events <= 100
    assert run["connected"] == CLIENTS
    assert run["lost"] == 0
    assert run["dup"] == 0
    assert run["delivered"] == run["expected"] == CLIENTS * events
    assert png.read_bytes().startswith(b"\x89PNG")


@pytest.mark.timeout(90)
def test_a_steady_connect_stream_opens_every_client(tmp_path: Path) -> None:
    """`--connect-steady` keeps a few connects in flight and replaces each as it
    ends; with fewer in flight than clients, every client must still get in."""
    report = _short_bench(tmp_path, "--clients", "30", "--connect-steady",
                          "--connect-batch", "4", "--rate", "20")
    assert report["scenario"]["connect_steady"] is True
    (run,) = report["runs"]
    assert run["connected"] == 30
    assert run["n_errors"] == 0
    assert run["lost"] == 0


@pytest.mark.timeout(90)
def test_from_job_appends_without_the_worker(tmp_path: Path) -> None:
    """`--from-job` publishes as code inside a Dramatiq job does: each call appends
    itself. With no worker running, every event must still reach every client
    (through the job queue, none would)."""
    report = _short_bench(tmp_path, "--clients", "10", "--no-worker", "--from-job",
                          "--producers", "2", "--rate", "40")
    assert report["scenario"]["from_job"] is True
    (run,) = report["runs"]
    events = run["published"]["events"]
    assert events > 0
    assert "worker" not in run["cpu_pct"]["publish"]
    assert run["lost"] == 0 and run["dup"] == 0
    assert run["delivered"] == run["expected"] == 10 * events


@pytest.mark.timeout(120)
def test_the_connect_floor_is_reported_beside_the_gateway(tmp_path: Path) -> None:
    """`--connect-floor` connects the same clients to a bare app served as a gateway
    is; both figures of CPU per connect are in the run's report."""
    # enough connects for some clock ticks of server CPU (/proc counts in 10 ms)
    report = _short_bench(tmp_path, "--clients", "300", "--rate", "20", "--connect-floor")
    (run,) = report["runs"]
    assert run["connected"] == 300
    assert run["cpu_ms_per_connect"]["gw1"] > 0
    floor = run["connect_floor"]
    assert floor["connected"] == 300 and floor["n_errors"] == 0, floor
    assert floor["cpu_ms_per_connect"] > 0


def _short_bench(tmp_path: Path, *args: str) -> dict[str, Any]:
    """One run of 1 s on one gateway of its own stack; the JSON report."""
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "roomcast.bench.main", "--gateways", "1", "--duration", "1",
         "--drain", "10", "--out", str(out), "--quiet", "--no-timeline", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.read_text())
    return report
