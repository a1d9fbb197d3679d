"""The wheel installs only roomcast's own top-level names: the three design packages
and `roomcast`, never generic ones (`client`, `cli`, `bench`) that would shadow a
user's modules."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_TOP_LEVEL = {"gateway", "workers", "shared", "roomcast"}


def test_wheel_top_level_names_are_exactly_the_intended_ones(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d",
                    str(tmp_path)], cwd=ROOT, check=True, capture_output=True, timeout=120)
    (wheel,) = tmp_path.glob("roomcast-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(
        ".dist-info")}
    assert top == EXPECTED_TOP_LEVEL
    # the CLI entry point names the package that ships
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as archive:
        assert "roomcast = roomcast.cli.main:main" in archive.read(entry_points).decode()
