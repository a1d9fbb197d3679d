"""sdk-js/ publishes to npm as it is: every file its package.json names exists, and
the entry points are the module and its declarations."""

from __future__ import annotations

import json
from pathlib import Path

SDK = Path(__file__).resolve().parents[2] / "sdk-js"


def test_every_published_file_exists() -> None:
    package = json.loads((SDK / "package.json").read_text())
    assert [name for name in package["files"] if not (SDK / name).is_file()] == []
    assert package["exports"]["."] == {"types": "./roomcast.d.ts", "default": "./roomcast.js"}
    assert package["type"] == "module" and not package.get("dependencies")
