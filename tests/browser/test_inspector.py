"""The inspector page at `/`, built on roomcast.js, driven like a person would:
mint a dev token, connect, join, watch a backend event, send a message, live
through a gateway SIGKILL; the screenshot is kept as a test artifact."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.support.browser import save_artifact
from tests.support.stack import JWT_SECRET, Stack
from workers.api import Backend


def test_inspector_joins_receives_sends_and_shows_a_recovery(
        page: Page, stack: Stack, backend: Backend, unique_id: Callable[[], int],
        tmp_path: Path) -> None:
    first, second = stack.gateways
    page.goto(f"{first.http}/?urls={first.url},{second.url}")

    # A user's mistake gets one clear line on the page.
    page.click("#connect")
    expect(page.locator("#problem")).to_have_text("roomcast: options.token is empty")

    user, room = unique_id(), f"project:{unique_id()}"
    page.click("#mint-box summary")
    page.fill("#mint-secret", JWT_SECRET)
    page.fill("#mint-user", str(user))
    page.fill("#mint-name", "ivy")
    page.click("#mint")
    expect(page.locator("#token")).to_have_value(re.compile(r"^[\w-]+\.[\w-]+\.[\w-]+$"))
    page.click("#connect")
    expect(page.locator("#status")).to_have_text("open")
    expect(page.locator("#facts")).to_contain_text(f"user {user} (ivy)")

    page.fill("#room", room)
    page.click("#join")
    row = page.locator(f'#rooms tr[data-room="{room}"]')
    expect(row).to_contain_text("joined")

    backend.task_created(room, task_id=5, project_id=1, title="shown in the inspector")
    event = page.locator(f'.entry[data-type="task.created"][data-room="{room}"]')
    expect(event).to_contain_text("shown in the inspector")
    expect(event).to_contain_text("from system")
    event_id = event.get_attribute("data-id")
    assert event_id and re.fullmatch(r"\d+-\d+", event_id)

    page.fill("#content", "hello from the inspector")
    page.click("#send")
    message = page.locator(f'.entry[data-type="message"][data-room="{room}"]')
    expect(message).to_contain_text("hello from the inspector")
    expect(message).to_contain_text("from ivy")
    expect(page.locator('.entry[data-type="send ok"]')).to_contain_text("messageId")

    first.kill()  # the page's gateway dies; the SDK fails over to the second URL
    try:
        expect(page.locator('.entry[data-type="disconnected"]')).to_contain_text(
            "code 1006 — dropped")
        recovered = page.locator(f'.entry[data-type="recovered"][data-room="{room}"]')
        expect(recovered).to_contain_text("recovered: true")
        expect(page.locator("#status")).to_have_text("open")
        expect(page.locator("#facts")).to_contain_text(second.url)
        expect(page.locator("#counts")).to_contain_text("1 reconnects")
        backend.task_created(room, task_id=6, project_id=1, title="after the failover")
        expect(page.locator(f'.entry[data-type="task.created"][data-room="{room}"]').last
               ).to_contain_text("after the failover")
        last_id = page.locator(f'.entry[data-type="task.created"][data-room="{room}"]'
                               ).last.get_attribute("data-id")
        expect(row).to_contain_text(str(last_id))
        expect(row).to_contain_text("recovered")
    finally:
        first.start()

    shot = tmp_path / "inspector.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    save_artifact(shot, "inspector.png")
