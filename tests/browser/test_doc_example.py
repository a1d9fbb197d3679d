"""The ten-line example of docs/client-js.md, run as written in chromium: only the
two gateway addresses are pointed at the test's gateways."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import ConsoleMessage, Page

from tests.browser.conftest import Origin
from tests.support.stack import Stack
from tests.support.tokens import make_token
from workers.api import Backend

DOC = Path(__file__).resolve().parents[2] / "docs" / "client-js.md"


def doc_example() -> str:
    text = DOC.read_text()
    section = text.split("## Ten lines", 1)[1]
    match = re.search(r"```html\n(.*?)```", section, re.S)
    assert match, "docs/client-js.md lost its example"
    return match.group(1)


def test_the_doc_example_has_ten_lines() -> None:
    assert len(doc_example().splitlines()) == 10


def test_the_doc_example_works_as_written(
        page: Page, stack: Stack, backend: Backend, app_origin: Origin,
        unique_id: Callable[[], int]) -> None:
    origin, pages = app_origin
    first, second = stack.gateways
    example = doc_example()
    assert example.count("localhost:8000") == 2 and example.count("localhost:8001") == 1
    pages["/example.html"] = (example.replace("localhost:8000", f"127.0.0.1:{first.port}")
                              .replace("localhost:8001", f"127.0.0.1:{second.port}"))
    lines: list[str] = []

    def collect(message: ConsoleMessage) -> None:
        lines.append(message.text)

    page.on("console", collect)
    page.on("pageerror", lambda error: lines.append(f"pageerror {error}"))
    # Each wait is armed before the action that causes the line: nothing can slip past.
    with page.expect_console_message(lambda m: "hello from the browser" in m.text,
                                     timeout=15_000):
        page.goto(f"{origin}/example.html?token={make_token(unique_id(), 'eve')}")
    with page.expect_console_message(lambda m: "from the backend" in m.text, timeout=15_000):
        backend.task_created("project:1", task_id=1, project_id=1, title="from the backend")

    def logged(pattern: str) -> bool:
        return any(re.search(pattern, line) for line in lines)

    assert logged(r'^message \d+-\d+ \{.*"content":"hello from the browser"'), lines
    assert logged(r'^task\.created \d+-\d+ \{.*"title":"from the backend"'), lines
    assert logged(r"^user_joined \d+-\d+"), lines
    assert not logged("pageerror|disconnected"), lines
