"""Browser tests: Debian's chromium (Playwright, sync API) against a real stack:
Redis, a worker and two gateways started by the project's own CLI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, sync_playwright

from shared.settings import Settings
from tests.support.browser import Pages, launch, page_server
from tests.support.redis_fixture import RedisUnderTest, running_redis
from tests.support.stack import JWT_SECRET, SHARDS, Stack
from workers.api import Backend

Origin = tuple[str, Pages]  # an app's origin and the pages it serves

# One stack and one browser for the whole package: starting them is most of the
# cost. Tests use unique rooms and users, and restart any gateway they kill.


@pytest.fixture(scope="package")
def browser_redis() -> Iterator[RedisUnderTest]:
    with running_redis() as server:
        yield server


@pytest.fixture(scope="package")
def stack(browser_redis: RedisUnderTest) -> Iterator[Stack]:
    """A worker and two gateways; rooms open to any token (as `roomcast up` runs)."""
    s = Stack(browser_redis.url, env_overrides={"ACCESS_MODE": "open"})
    s.start_worker()
    s.add_gateway()
    s.add_gateway()
    yield s
    s.stop()


@pytest.fixture(scope="package")
def backend(stack: Stack) -> Iterator[Backend]:
    """What a backend job uses to publish: workers.api on the stack's Redis."""
    b = Backend(Settings(REDIS_URL=stack.redis_url, JWT_SECRET=JWT_SECRET, STREAM_SHARDS=SHARDS))
    yield b
    b.close()


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[BrowserContext]:
    context = launch(playwright, tmp_path_factory.mktemp("chromium-profile"))
    yield context
    context.close()


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    p = browser.new_page()
    p.set_default_timeout(15_000)
    yield p
    p.close()


@pytest.fixture(scope="package")
def app_origin() -> Iterator[Origin]:
    with page_server() as served:
        yield served


def harness(origin: str, pages: Pages, gateway_http: str) -> str:
    """A blank app page that imports the SDK from the gateway as `window.roomcast`."""
    pages["/harness.html"] = f"""<!doctype html><meta charset="utf-8"><title>harness</title>
<script type="module">
import * as roomcast from "{gateway_http}/sdk/roomcast.js";
window.seen = [];
window.roomcast = roomcast;
</script>"""
    return f"{origin}/harness.html"


def open_harness(page: Page, app_origin: Origin, gateway_http: str) -> None:
    page.goto(harness(*app_origin, gateway_http))
    page.wait_for_function("window.roomcast !== undefined")
