"""`roomcast client` stops with one line and a non-zero exit when it can never get
in: a token the gateway refuses (4401), or a URL that is not a gateway's
WebSocket (nothing listening, an HTTP 404, a plain web page), after a bounded
number of attempts. (It used to exit 0 after 4401 and retry a wrong URL forever.)"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from roomcast.cli.embedded_redis import free_port
from tests.support.cli import clean_env, one_line_error
from tests.support.delivery import stack_on
from tests.support.redis_fixture import RedisUnderTest

TOKEN = "not-a-valid-token"
BOUND = 25.0  # seconds: every case here ends well within it


def _client(url: str, token: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The terminal client with its stdin left open, as in a terminal nobody types in."""
    process = subprocess.Popen([sys.executable, "-m", "roomcast.cli.main", "client", "--url",
                                url, "--token", token], cwd=cwd, env=clean_env(),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        process.wait(BOUND)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    finally:
        assert process.stdin is not None and process.stdout is not None
        assert process.stderr is not None
        process.stdin.close()
        out, err = process.stdout.read(), process.stderr.read()
        process.stdout.close()
        process.stderr.close()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


class _Page(http.server.BaseHTTPRequestHandler):
    """A web server that is not a gateway: 404 under /missing, a page elsewhere."""

    protocol_version = "HTTP/1.1"  # as any web server today (1.0 is not even parsed)

    def do_GET(self) -> None:
        if self.path.startswith("/missing"):
            self.send_error(404)
            return
        body = b"<html>hello</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _web_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_a_refused_token_exits_non_zero(redis_server: RedisUnderTest, tmp_path: Path) -> None:
    with stack_on(redis_server.url, gateways=1, worker=False) as stack:
        started = time.monotonic()
        line = one_line_error(_client(stack.gateways[0].url, TOKEN, tmp_path))
    assert time.monotonic() - started < BOUND
    assert "4401" in line and "roomcast token" in line


@pytest.mark.parametrize(("path", "shown"), [("/missing", "HTTP 404"), ("/", "HTTP 200")])
def test_a_web_page_is_not_a_gateway(tmp_path: Path, path: str, shown: str) -> None:
    with _web_server() as port:
        line = one_line_error(_client(f"ws://127.0.0.1:{port}{path}", TOKEN, tmp_path))
    assert shown in line and "gave up after" in line


def test_nothing_listening(tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{free_port()}/api/v1/ws/connect"
    line = one_line_error(_client(url, TOKEN, tmp_path))
    assert url in line and "gave up after" in line
