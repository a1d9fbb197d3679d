"""`Connection` against a scripted sink: order, bounds and closes, deterministically.

The sink is the edge we fake (the socket); the connection, its queue and its
writer task are the real ones. `writable` is switched by the test, and the test
waits on the writer actually blocking before it acts, so every interleaving here
is the one named, not a timing accident.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from gateway.auth import Principal
from gateway.connection import Connection, IdKey, SendLimits
from gateway.sink import Offer, total_bytes
from shared.codec import ws_frame_payload, ws_text_frame

ROOM = "project:1"


class ScriptedSink:
    """A FrameSink whose writability the test controls; records what reaches the socket."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.writes = 0  # write calls (one per socket write)
        self.closed_with: tuple[int, str] | None = None
        self.buffered = 0
        self._writable = asyncio.Event()
        self._writable.set()
        self.blocked = asyncio.Event()  # someone waits for the socket to drain

    @property
    def open(self) -> bool:
        return self.closed_with is None

    def offer(self, frames: list[bytes], size: int, limit: int) -> Offer:
        if not (self.open and self._writable.is_set()):
            return Offer.NOT_WRITABLE
        if self.buffered + size > limit:
            return Offer.OVER_LIMIT
        self.write(frames)
        return Offer.WRITTEN

    async def wait_writable(self) -> None:
        if not self._writable.is_set():
            self.blocked.set()
        await self._writable.wait()

    def write(self, frames: list[bytes]) -> None:
        assert self.open, "write after close"
        self.writes += 1
        self.written.extend(frames)

    def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)

    def stall(self) -> None:
        self._writable.clear()
        self.blocked.clear()

    def drain(self) -> None:
        self._writable.set()

    def texts(self) -> list[str]:
        return [ws_frame_payload(frame) for frame in self.written]


class PagedReplay:
    """A ReplayCursor over given pages; with `stepped`, each page waits for `allow()`."""

    def __init__(self, pages: list[list[tuple[IdKey, bytes]]], *, broken: bool = False,
                 stepped: bool = False) -> None:
        self.room = ROOM
        self._pages = list(pages)
        self._broken = broken
        self._allowed = asyncio.Semaphore(0) if stepped else None
        self.asked = 0  # next_page calls so far

    @property
    def broken(self) -> bool:
        return self._broken and not self._pages

    def allow(self) -> None:
        assert self._allowed is not None
        self._allowed.release()

    async def next_page(self) -> list[tuple[IdKey, bytes]]:
        self.asked += 1
        if self._allowed is not None:
            await self._allowed.acquire()
        return self._pages.pop(0) if self._pages else []


def frame(n: int, size: int = 0) -> bytes:
    return ws_text_frame(f'{{"id":"{n}-0","pad":"{"x" * size}"}}'.encode())


def ids(sink: ScriptedSink) -> list[str]:
    return [orjson.loads(text)["id"] for text in sink.texts() if '"id"' in text]


def connection(sink: ScriptedSink, *, queue_max: int = 100,
               buffer_max: int = 1_000_000) -> Connection:
    principal = Principal(user_id=1, username="ann", expires_at=time.time() + 3600)
    conn = Connection(sink, principal, "gw:1", SendLimits(queue_max, buffer_max))
    conn.open()
    return conn


def push(conn: Connection, n: int, size: int = 0) -> None:
    conn.push_event(ROOM, (n, 0), frame(n, size))
    conn.flush_batch()


async def until(probe: object, what: str, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0)  # one loop turn: lets the writer task run


async def test_a_live_frame_never_overtakes_frames_the_writer_holds() -> None:
    """The writer took frame 1 from the queue and waits for the socket. The socket
    drains in the same loop turn in which frame 2 arrives: 2 must not go first (a
    client dropping ids it has passed would lose 1)."""
    sink = ScriptedSink()
    conn = connection(sink)
    sink.stall()
    push(conn, 1)
    await sink.blocked.wait()  # the writer holds frame 1
    sink.drain()
    push(conn, 2)  # same loop turn: the writer has not run yet
    await until(lambda: len(sink.written) == 2, "both frames")
    assert ids(sink) == ["1-0", "2-0"]


async def test_a_live_frame_waits_for_a_replay_in_progress() -> None:
    sink = ScriptedSink()
    conn = connection(sink)
    replay = PagedReplay([[((1, 0), frame(1))], [((2, 0), frame(2))]], stepped=True)
    conn.hold(ROOM)
    conn.release(ROOM, (2, 0), replay)
    replay.allow()
    await until(lambda: replay.asked == 2, "the writer fetching the second page")
    assert ids(sink) == ["1-0"]
    push(conn, 3)  # live, while the replay still has a page to go
    replay.allow()
    replay.allow()  # and the empty page that ends the replay
    await until(lambda: len(sink.written) == 3, "replay then live")
    assert ids(sink) == ["1-0", "2-0", "3-0"]


async def test_events_held_during_a_join_follow_the_replay_without_duplicates() -> None:
    sink = ScriptedSink()
    conn = connection(sink)
    conn.hold(ROOM)
    for n in (2, 3, 4):  # live while the join reads the history (which ends at 3)
        conn.push_event(ROOM, (n, 0), frame(n))
    replay = PagedReplay([[((1, 0), frame(1)), ((2, 0), frame(2)), ((3, 0), frame(3))]])
    conn.release(ROOM, (3, 0), replay)
    await until(lambda: len(sink.written) == 4, "replay and the newer live event")
    push(conn, 4)  # again: already sent
    push(conn, 5)
    await until(lambda: len(sink.written) == 5, "the next live event")
    assert ids(sink) == ["1-0", "2-0", "3-0", "4-0", "5-0"]


async def test_a_replay_broken_by_a_trim_ends_with_resync_required() -> None:
    sink = ScriptedSink()
    conn = connection(sink)
    conn.hold(ROOM)
    conn.release(ROOM, (9, 0), PagedReplay([[((1, 0), frame(1))]], broken=True))
    await until(lambda: len(sink.written) == 2, "the page and the resync")
    last = orjson.loads(sink.texts()[-1])
    assert (last["type"], last["room"]) == ("resync_required", ROOM)


async def test_a_reply_keeps_its_place_among_events() -> None:
    sink = ScriptedSink()
    conn = connection(sink)
    sink.stall()
    push(conn, 1)
    conn.send('{"type":"pong"}')
    push(conn, 2)
    sink.drain()
    await until(lambda: len(sink.written) == 3, "all three frames")
    frames = [orjson.loads(text) for text in sink.texts()]
    assert [f.get("id") or f.get("type") for f in frames] == ["1-0", "pong", "2-0"]


async def test_more_queued_frames_than_the_queue_bound_close_1013() -> None:
    sink = ScriptedSink()
    conn = connection(sink, queue_max=3)
    sink.stall()
    for n in range(1, 5):
        push(conn, n)
    assert sink.closed_with == (1013, "Slow consumer")
    assert conn.queued == 0  # the queue is dropped with the connection


async def test_queued_bytes_past_the_buffer_bound_close_1013() -> None:
    sink = ScriptedSink()
    conn = connection(sink, queue_max=1000, buffer_max=10_000)
    sink.stall()
    for n in range(1, 4):
        push(conn, n, size=3000)
    assert sink.closed_with is None  # ~9 KB queued: under the bound
    push(conn, 4, size=3000)
    assert sink.closed_with == (1013, "Slow consumer")


async def test_the_sinks_unsent_buffer_counts_against_the_byte_bound() -> None:
    """A direct write into a socket that already holds most of the bound closes too:
    the transport's buffer is memory this connection holds."""
    sink = ScriptedSink()
    conn = connection(sink, buffer_max=10_000)
    sink.buffered = 9_000  # writable, but the kernel has not taken these bytes yet
    push(conn, 1, size=500)
    assert sink.closed_with is None
    push(conn, 2, size=2000)
    assert sink.closed_with == (1013, "Slow consumer")


async def test_close_after_flush_writes_what_is_queued_first() -> None:
    sink = ScriptedSink()
    conn = connection(sink)
    sink.stall()
    push(conn, 1)
    conn.send('{"type":"error"}')
    closing = asyncio.create_task(conn.close_after_flush(1008, "Rate limit exceeded", 5))
    await sink.blocked.wait()
    assert sink.closed_with is None
    sink.drain()
    await closing
    assert len(sink.written) == 2 and sink.closed_with == (1008, "Rate limit exceeded")


async def test_close_after_flush_gives_up_on_a_client_that_does_not_read() -> None:
    sink = ScriptedSink()
    conn = connection(sink)
    sink.stall()
    push(conn, 1)
    await conn.close_after_flush(1008, "Rate limit exceeded", 0.05)
    assert sink.closed_with == (1008, "Rate limit exceeded") and sink.written == []


@pytest.mark.parametrize("closing", ["close", "mark_closed"])
async def test_nothing_is_written_after_a_close(closing: str) -> None:
    sink = ScriptedSink()
    conn = connection(sink)
    sink.stall()
    push(conn, 1)
    if closing == "close":
        conn.close(1000)
    else:
        conn.mark_closed(1006)
    sink.drain()
    push(conn, 2)
    conn.send('{"type":"pong"}')
    await asyncio.sleep(0)  # a turn for a writer task that must not exist
    assert sink.written == []


def test_total_bytes_counts_every_frame_whatever_their_number() -> None:
    assert total_bytes([]) == 0
    assert total_bytes([b"abc"]) == 3
    assert total_bytes([b"abc", b"", b"de"]) == 5
