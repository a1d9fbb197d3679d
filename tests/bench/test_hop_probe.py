"""`roomcast bench --hop-probe`: every event of the four paths is timed, through a
real worker, a real relay process and a real reader, on the probe's own Redis."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from roomcast.bench.hop_probe import PATHS

ROOT = Path(__file__).resolve().parents[2]


def _bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "roomcast.bench.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.timeout(150)
def test_every_path_delivers_each_of_its_events(tmp_path: Path) -> None:
    out = tmp_path / "hop.json"
    proc = _bench("--hop-probe", "--rate", "200", "--duration", "0.4", "--runs", "1",
                  "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["scenario"]["events"] == 80
    run = report["runs"][0]
    for path in PATHS:
        assert run[path]["n"] == 20, (path, run[path])
        assert 0 < run[path]["p50_ms"] <= run[path]["p90_ms"]
    assert set(report["summary"]) == set(PATHS)


def test_a_probe_without_a_rate_is_one_line() -> None:
    proc = _bench("--hop-probe", "--rate", "0", timeout=30)
    assert proc.returncode == 2
    assert "--hop-probe needs a --rate above 0" in proc.stderr.strip().splitlines()[-1]
