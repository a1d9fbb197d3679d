"""Debian's chromium driven by Playwright (sync API), and a tiny static origin for
test pages: real browser, real pages, real sockets; no browser download."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, Playwright

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps calling home, and this
# network is closed; the rest keep a headless run lean and repeatable.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"  # git-ignored


def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run scripts/system-deps "
                           "(apt-get install -y chromium) or scripts/test")
    return CHROMIUM


def launch(playwright: Playwright, user_data_dir: Path) -> BrowserContext:
    """A fresh profile in `user_data_dir` (the caller's tmp dir), never the default one."""
    return playwright.chromium.launch_persistent_context(
        str(user_data_dir), executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 800})


# A page's HTML, or a function making a response on each request (a token endpoint).
Pages = dict[str, str | Callable[[], str]]


class _Pages(BaseHTTPRequestHandler):
    pages: Pages = {}

    def do_GET(self) -> None:
        body = self.pages.get(self.path.split("?", 1)[0])
        if body is None:
            self.send_error(404)
            return
        dynamic = callable(body)
        data = (body() if callable(body) else body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain" if dynamic else "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: pytest shows failures, not every page load


@contextmanager
def page_server() -> Iterator[tuple[str, Pages]]:
    """An app's own origin (not a gateway's), serving the HTML put in the returned dict:
    pages loaded from it import /sdk/roomcast.js cross-origin, as a real app does."""
    pages: Pages = {}
    handler = type("Pages", (_Pages,), {"pages": pages})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="test-pages", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", pages
    finally:
        server.shutdown()
        server.server_close()


def save_artifact(source: Path, name: str) -> Path:
    """Copy a test artifact (screenshot, figures) to the git-ignored test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / name
    shutil.copyfile(source, target)
    return target
