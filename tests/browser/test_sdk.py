"""roomcast.js in Debian's chromium against real gateways, a real worker and Redis:
a backend event reaches the page; a SIGKILLed gateway costs the page nothing
(every event once, in stream order); a send made offline arrives once; a
session outlives its short-lived token by refreshing it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, WebSocket

from tests.browser.conftest import Origin, open_harness
from tests.support.browser import ARTIFACTS
from tests.support.stack import Stack
from tests.support.tokens import make_token
from workers.api import Backend

# Creates a client in the page that records every event (with the page's clock).
_CONNECT = """async ([name, urls, token, room, options]) => {
  const client = new roomcast.RoomcastClient(urls, { token, ...options });
  window[name] = client;
  window.seen[name] = [];
  client.on("*", (e) => window.seen[name].push({ ...e, at: Date.now() }));
  await client.join(room);
  return client.url;
}"""


def _seen(page: Page, name: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = page.evaluate("name => window.seen[name]", name)
    return events


def _wait_count(page: Page, name: str, type_: str, count: int, timeout: float = 20_000) -> None:
    page.wait_for_function(
        "([name, type, count]) => window.seen[name].filter(e => e.type === type).length >= count",
        arg=[name, type_, count], timeout=timeout)


def test_page_loads_the_sdk_and_receives_a_backend_event(
        page: Page, stack: Stack, backend: Backend, app_origin: Origin,
        unique_id: Callable[[], int]) -> None:
    sockets: list[WebSocket] = []
    page.on("websocket", lambda ws: sockets.append(ws))
    open_harness(page, app_origin, stack.gateways[0].http)
    room, user = f"project:{unique_id()}", unique_id()
    token = make_token(user, "alice")
    page.evaluate("() => { window.seen = {}; }")
    page.evaluate(_CONNECT, ["alice", [stack.gateways[0].url], token, room, {}])

    key = backend.task_created(room, task_id=7, project_id=1, title="from a backend job")
    _wait_count(page, "alice", "task.created", 1)

    (event,) = [e for e in _seen(page, "alice") if e["type"] == "task.created"]
    assert event["room"] == room and event["sender"] == "system"
    assert event["data"] == {"task_id": 7, "project_id": 1, "title": "from a backend job"}
    assert event["id"] and key
    connected = next(e for e in _seen(page, "alice") if e["type"] == "connected")
    assert connected["userId"] == user and connected["username"] == "alice"
    assert connected["rooms"] == [f"user:{user}"] and connected["reconnect"] is False
    # The token travelled in the subprotocol, not in the URL (nor in any log of it).
    assert [s.url for s in sockets] == [stack.gateways[0].url]
    assert token not in stack.gateways[0].log_text()


def _publish_paced(backend: Backend, room: str, count: int, interval: float,
                   done: threading.Event) -> None:
    """One producer thread: stream order is the order enqueued."""
    try:
        next_at = time.monotonic()
        for n in range(count):
            backend.task_created(room, task_id=n, project_id=1, title=f"e{n}")
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))  # pacing, not synchronisation
    finally:
        done.set()


def test_sigkilled_gateway_page_fails_over_and_gets_every_event_once_in_order(
        page: Page, stack: Stack, backend: Backend, app_origin: Origin,
        unique_id: Callable[[], int]) -> None:
    victim, survivor = stack.gateways
    open_harness(page, app_origin, survivor.http)
    room, user = f"project:{unique_id()}", unique_id()
    page.evaluate("() => { window.seen = {}; }")
    first_url = page.evaluate(_CONNECT, ["bob", [victim.url, survivor.url],
                                         make_token(user, "bob"), room, {}])
    assert first_url == victim.url

    total, kill_after = 150, 40
    published = threading.Event()
    publisher = threading.Thread(target=_publish_paced,
                                 args=(backend, room, total, 0.02, published))
    publisher.start()
    try:
        _wait_count(page, "bob", "task.created", kill_after)
        killed_at = time.time() * 1000
        victim.kill()  # SIGKILL while events keep flowing
        _wait_count(page, "bob", "task.created", total, timeout=30_000)
        assert published.wait(30)
    finally:
        publisher.join(30)
        if victim.process is None or victim.process.poll() is not None:
            victim.start()  # the same instance id: it finds its cursor again

    seen = _seen(page, "bob")
    in_room = [e for e in seen if e.get("room") == room and "id" in e]
    ids = [tuple(int(p) for p in e["id"].split("-")) for e in in_room]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), "stream order, each id once"
    titles = [e["data"]["title"] for e in in_room if e["type"] == "task.created"]
    assert titles == [f"e{n}" for n in range(total)], "every event exactly once, in order"

    # The page noticed, went to the other gateway, and resumed the room there.
    dropped = next(e for e in seen if e["type"] == "disconnected")
    assert dropped["url"] == victim.url and dropped["willReconnect"] is True
    back = next(e for e in seen if e["type"] == "connected" and e["reconnect"])
    assert back["url"] == survivor.url
    recovered = next(e for e in seen if e["type"] == "recovered" and e["room"] == room)
    assert not [e for e in seen if e["type"] in ("not_recovered", "resync_required")]
    first_after = next(e for e in seen if e.get("room") == room and e["type"] == "task.created"
                       and e["at"] >= recovered["at"])
    figures = {
        "events_published": total,
        "killed_after_events": kill_after,
        "detect_ms": round(dropped["at"] - killed_at),
        "reconnect_ms": round(back["at"] - killed_at),
        "resume_ms": round(recovered["at"] - killed_at),
        "first_event_after_resume_ms": round(first_after["at"] - killed_at),
        "events_replayed": recovered["replayed"],
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "browser-recovery.json").write_text(json.dumps(figures, indent=2) + "\n")
    print("browser recovery after SIGKILL:", figures)


def test_send_made_offline_arrives_once(
        page: Page, stack: Stack, backend: Backend, app_origin: Origin,
        unique_id: Callable[[], int]) -> None:
    gateway, other = stack.gateways
    open_harness(page, app_origin, other.http)
    room = f"channel:{unique_id()}"
    page.evaluate("() => { window.seen = {}; }")
    fast = {"backoff": {"base": 100, "cap": 500}}
    page.evaluate(_CONNECT, ["carol", [gateway.url], make_token(unique_id(), "carol"), room, fast])
    page.evaluate(_CONNECT, ["dave", [other.url], make_token(unique_id(), "dave"), room, {}])

    gateway.kill()
    try:
        page.wait_for_function("window.carol.state !== 'open'")
        missed = [backend.task_created(room, task_id=n, project_id=1, title=f"missed{n}")
                  for n in range(3)]
        _wait_count(page, "dave", "task.created", 3)
        page.evaluate("""room => {
          window.offlineSend = carol.send(room, "written while offline");
          window.offlineSend.then((ack) => { window.ack = ack; });
        }""", room)
        assert page.evaluate("carol.state") != "open"
    finally:
        gateway.start()
    page.wait_for_function("window.ack !== undefined", timeout=20_000)
    ack = page.evaluate("window.ack")
    assert ack["key"] and ack["messageId"]

    # A fence published after the ack: anything the send caused comes before it.
    backend.task_created(room, task_id=99, project_id=1, title="fence")
    for name in ("carol", "dave"):
        page.wait_for_function(
            "([n]) => window.seen[n].some(e => e.type === 'task.created' && "
            "e.data.title === 'fence')", arg=[name])
        messages = [e for e in _seen(page, name)
                    if e["type"] == "message" and e["data"]["content"] == "written while offline"]
        assert len(messages) == 1, (name, messages)
        assert messages[0]["data"]["message_id"] == ack["messageId"]
        assert messages[0]["sender"] == "carol"
    # Carol got, after her resume, the very stream dave saw live: each id once, in order.
    stream = {name: _room_stream(_seen(page, name), room) for name in ("carol", "dave")}
    assert stream["carol"][-len(stream["dave"]):] == stream["dave"]
    assert len(set(stream["carol"])) == len(stream["carol"])
    titles = [e["data"]["title"] for e in _seen(page, "carol") if e["type"] == "task.created"]
    assert sorted(titles) == ["fence", "missed0", "missed1", "missed2"]
    # The rejoin replayed what she missed before her queued send was flushed.
    replayed = next(e for e in _seen(page, "carol")
                    if e["type"] == "recovered" and e["room"] == room)
    assert replayed["replayed"] >= len(missed)
    kinds = [e["type"] for e in _seen(page, "carol") if e.get("room") == room and "id" in e]
    assert kinds.index("message") > max(i for i, k in enumerate(kinds) if k == "task.created"
                                        and i < kinds.index("message"))


def _room_stream(events: list[dict[str, Any]], room: str) -> list[str]:
    """Stream ids of the room's events, up to and including the fence."""
    ids: list[str] = []
    for e in events:
        if e.get("room") == room and "id" in e:
            ids.append(e["id"])
            if e["type"] == "task.created" and e["data"]["title"] == "fence":
                break
    return ids


def test_session_outlives_its_token_by_refreshing_it(
        page: Page, stack: Stack, app_origin: Origin, unique_id: Callable[[], int]) -> None:
    """The gateway closes with 4401 at a token's exp unless it was refreshed; the
    page's token function (an app's token endpoint) gives 3-second tokens."""
    origin, pages = app_origin
    user, room = unique_id(), f"task:{unique_id()}"
    pages[f"/token/{user}"] = lambda: make_token(user, "fay", ttl=3)
    refreshes: list[str] = []

    def watch(ws: WebSocket) -> None:
        ws.on("framesent", lambda payload: refreshes.append(str(payload))
              if '"refresh"' in str(payload) else None)

    page.on("websocket", watch)
    open_harness(page, app_origin, stack.gateways[0].http)
    page.evaluate("() => { window.seen = {}; }")
    page.evaluate(f"""() => {{ window.tokens = []; window.fetchToken = () =>
        fetch("{origin}/token/{user}").then((r) => r.text())
          .then((t) => {{ window.tokens.push(t); return t; }}); }}""")
    page.evaluate("""async ([url, room]) => {
      const client = new roomcast.RoomcastClient([url], { token: window.fetchToken });
      window.fay = client;
      window.seen.fay = [];
      client.on("*", (e) => window.seen.fay.push({ ...e, at: Date.now() }));
      await client.join(room);
    }""", [stack.gateways[0].url, room])
    first_exp = page.evaluate("roomcast.tokenExpiry(window.tokens[0]) ?? 0")
    assert first_exp > 0
    # Past the first token's exp (and the second's): the same connection is still open.
    page.wait_for_function("exp => Date.now() > exp + 3500", arg=first_exp, timeout=10_000)
    assert page.evaluate("fay.state") == "open"
    kinds = [e["type"] for e in _seen(page, "fay")]
    assert "disconnected" not in kinds and kinds.count("connected") == 1, kinds
    assert len(refreshes) >= 2, refreshes
