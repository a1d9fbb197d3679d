"""Group commit of a process's concurrent enqueues, on a real Redis: callers that
arrive while a round is in flight share the next script call, each still gets its
own answer (queued, refused by a full shard, or a lost connection to retry), and a
forked child never waits for its parent's round.

A round is held in flight with CLIENT PAUSE: Redis keeps the leader's call
unanswered until CLIENT UNPAUSE, so who waits for whom is decided, not timed."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import orjson
import pytest
import redis

from shared import keys
from shared.engines.redis.job_queue import RedisJobQueue
from shared.engines.roles import EventJob, PendingEvent, QueueFull
from shared.rooms import shard_of
from shared.settings import Settings
from tests.support.redis_fixture import RedisUnderTest

SHARDS = 4
_room_ids = itertools.count(1)


def room_in(shard: int) -> str:
    while True:
        room = f"project:{next(_room_ids)}"
        if shard_of(room, SHARDS) == shard:
            return room


def job(room: str) -> EventJob:
    return EventJob((PendingEvent(uuid.uuid4().hex, room, b"{}"),))


def inbox_total(r: redis.Redis) -> int:
    return sum(int(r.xlen(keys.inbox(shard))) for shard in range(SHARDS))


def queued_keys(r: redis.Redis) -> set[str]:
    """The event keys of every job in the inboxes."""
    found = set()
    for shard in range(SHARDS):
        for _, fields in r.xrange(keys.inbox(shard)):
            if b"m0" in fields:
                found.add(str(orjson.loads(fields[b"m0"])[0]))
    return found


def evalsha_calls(r: redis.Redis) -> int:
    return int(r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


@pytest.fixture
def admin(redis_server: RedisUnderTest) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    client.delete(*[keys.inbox(shard) for shard in range(SHARDS)])
    yield client
    client.client_unpause()  # whatever a failed test left paused
    client.close()


def make_queue(redis_server: RedisUnderTest, bound: int = 100_000) -> RedisJobQueue:
    settings = Settings(REDIS_URL=redis_server.url, JWT_SECRET="x" * 40,
                        STREAM_SHARDS=SHARDS, PUBLISH_QUEUE_MAX=bound)
    queue = RedisJobQueue(redis.Redis.from_url(redis_server.url), settings)
    queue.enqueue([job(room_in(0))])  # shard count checked, script loaded, connected
    return queue


def waiting(queue: RedisJobQueue) -> int:
    return len(queue._enqueue._waiting)  # type: ignore[union-attr]


class Caller(threading.Thread):
    def __init__(self, queue: RedisJobQueue, room: str, timeout: float | None = None,
                 jobs: list[EventJob] | None = None) -> None:
        super().__init__(daemon=True)
        self.queue, self.timeout = queue, timeout
        self.jobs = jobs if jobs is not None else [job(room)]
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.queue.enqueue(self.jobs, timeout=self.timeout)
        except BaseException as exc:
            self.error = exc


def start_round_in_flight(queue: RedisJobQueue, admin: redis.Redis) -> Caller:
    """Pauses Redis and starts a caller that leads a round Redis holds unanswered."""
    admin.client_pause(60_000, all=False)  # WRITE: scripts wait, CLIENT and INFO do not
    leader = Caller(queue, room_in(3))
    leader.start()
    wait_until(lambda: queue._enqueue._busy and waiting(queue) == 0,  # type: ignore[union-attr]
               "the first caller's round")
    return leader


def test_callers_that_arrive_during_a_round_share_the_next_one(
        redis_server: RedisUnderTest, admin: redis.Redis) -> None:
    queue = make_queue(redis_server)
    before_jobs, before_calls = inbox_total(admin), evalsha_calls(admin)
    leader = start_round_in_flight(queue, admin)
    followers = [Caller(queue, room_in(k % SHARDS)) for k in range(7)]
    for caller in followers:
        caller.start()
    wait_until(lambda: waiting(queue) == 7, "seven callers behind the round")
    admin.client_unpause()
    for caller in [leader, *followers]:
        caller.join(10)
        assert not caller.is_alive() and caller.error is None, caller.error
    assert inbox_total(admin) - before_jobs == 8
    assert evalsha_calls(admin) - before_calls == 2  # the leader's round, then one for 7


def test_a_full_shard_refuses_only_its_own_callers_in_a_shared_round(
        redis_server: RedisUnderTest, admin: redis.Redis) -> None:
    queue = make_queue(redis_server, bound=3)
    for _ in range(3):
        admin.xadd(keys.inbox(1), {"k": "filler"})  # shard 1 at its bound
    leader = start_round_in_flight(queue, admin)
    refused = Caller(queue, room_in(1), timeout=0)  # a full shard: gives up at once
    accepted = [Caller(queue, room_in(2)) for _ in range(2)]
    for caller in [refused, *accepted]:
        caller.start()
    wait_until(lambda: waiting(queue) == 3, "three callers behind the round")
    admin.client_unpause()
    for caller in [leader, refused, *accepted]:
        caller.join(10)
        assert not caller.is_alive()
    assert isinstance(refused.error, QueueFull), refused.error
    assert [c.error for c in [leader, *accepted]] == [None] * 3
    assert admin.xlen(keys.inbox(1)) == 3  # nothing of the refused caller's
    assert admin.xlen(keys.inbox(2)) == 2


def test_a_connection_lost_in_a_round_is_ridden_over_by_each_caller(
        redis_server: RedisUnderTest, admin: redis.Redis) -> None:
    queue = make_queue(redis_server)
    before = inbox_total(admin)
    leader = start_round_in_flight(queue, admin)
    followers = [Caller(queue, room_in(k % SHARDS)) for k in range(3)]
    for caller in followers:
        caller.start()
    wait_until(lambda: waiting(queue) == 3, "three callers behind the round")
    admin.client_kill_filter(_type="normal", skipme=True)  # the round's connection
    admin.client_unpause()
    for caller in [leader, *followers]:
        caller.join(10)
        assert not caller.is_alive() and caller.error is None, caller.error
    assert inbox_total(admin) - before == 4  # each once: the killed call never ran


def test_a_flushed_script_is_loaded_again(redis_server: RedisUnderTest,
                                          admin: redis.Redis) -> None:
    queue = make_queue(redis_server)
    before = inbox_total(admin)
    admin.script_flush()
    queue.enqueue([job(room_in(2))])
    assert inbox_total(admin) - before == 1


def test_a_child_forked_during_a_round_queues_on_its_own(
        redis_server: RedisUnderTest, admin: redis.Redis) -> None:
    queue = make_queue(redis_server)
    before = inbox_total(admin)
    leader = start_round_in_flight(queue, admin)
    pid = os.fork()
    if pid == 0:  # the child: the parent's round stays in flight over there
        code = 1
        try:
            redis.Redis.from_url(redis_server.url).client_unpause()
            queue.enqueue([job(room_in(1))], timeout=5)
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the child waited for its parent's round")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(done[1]) == 0
    leader.join(10)
    assert not leader.is_alive() and leader.error is None, leader.error
    assert inbox_total(admin) - before == 2


class Interrupted(Exception):
    """What a signal handler raises in the main thread (as Ctrl-C's KeyboardInterrupt)."""


@contextmanager
def interrupt_on_usr1() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise Interrupted()

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, old)


def interrupt_main_after(prepare: Callable[[], None]) -> threading.Thread:
    """A thread that runs `prepare`, then interrupts the main thread (this test's)."""
    main = threading.get_ident()

    def run() -> None:
        try:
            prepare()
        finally:
            signal.pthread_kill(main, signal.SIGUSR1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_waiter_interrupted_by_a_signal_leaves_the_others_their_turn(
        redis_server: RedisUnderTest, admin: redis.Redis) -> None:
    queue = make_queue(redis_server)
    before = inbox_total(admin)
    leader = start_round_in_flight(queue, admin)
    follower = Caller(queue, room_in(2))

    def behind_the_main_thread() -> None:
        wait_until(lambda: waiting(queue) == 1, "the main thread waiting")
        follower.start()
        wait_until(lambda: waiting(queue) == 2, "a caller behind it")

    with interrupt_on_usr1():
        interrupt_main_after(behind_the_main_thread)
        with pytest.raises(Interrupted):
            queue.enqueue([job(room_in(1))])
    admin.client_unpause()
    for caller in [leader, follower]:  # the lead must not go to the caller that left
        caller.join(10)
        assert not caller.is_alive() and caller.error is None, caller.error
    assert inbox_total(admin) - before == 2  # the interrupted call was never sent


def test_a_leader_interrupted_by_a_signal_leaves_the_others_of_its_round_to_retry(
        redis_server: RedisUnderTest, admin: redis.Redis) -> None:
    queue = make_queue(redis_server)
    first = start_round_in_flight(queue, admin)
    conn = queue._enqueue._conn  # type: ignore[union-attr]
    first_socket = conn._sock
    followers = [Caller(queue, room_in(k % SHARDS)) for k in range(2)]

    def main_thread_leads_a_round_with_two_callers() -> None:
        wait_until(lambda: waiting(queue) == 1, "the main thread behind the first round")
        for caller in followers:
            caller.start()
        wait_until(lambda: waiting(queue) == 3, "two callers behind it too")
        admin.client_kill_filter(_type="normal", skipme=True)  # the first round fails
        wait_until(lambda: conn._sock not in (None, first_socket),
                   "the main thread's round, on a new connection")

    with interrupt_on_usr1():
        interrupt_main_after(main_thread_leads_a_round_with_two_callers)
        with pytest.raises(Interrupted):
            queue.enqueue([job(room_in(1))])  # Redis holds its round unanswered
    admin.client_unpause()
    for caller in [first, *followers]:  # not the leader's Interrupted: they retried
        caller.join(10)
        assert not caller.is_alive() and caller.error is None, caller.error
    # Whether Redis ran the interrupted round is unknown to its callers, as for any
    # request interrupted on the way (those that retried may then be queued twice,
    # which the appends' dedupe by key absorbs); each of the others' jobs is there.
    queued = queued_keys(admin)
    assert all(caller.jobs[0].events[0].key in queued for caller in [first, *followers])


def test_a_job_redis_cannot_take_fails_only_its_own_caller(
        redis_server: RedisUnderTest, admin: redis.Redis) -> None:
    queue = make_queue(redis_server)
    before = inbox_total(admin)
    leader = start_round_in_flight(queue, admin)
    room = room_in(1)
    broken = Caller(queue, room, jobs=[EventJob((PendingEvent("k", room, None),))])  # type: ignore[arg-type]
    fine = Caller(queue, room_in(2))
    for caller in [broken, fine]:
        caller.start()
    wait_until(lambda: waiting(queue) == 2, "two callers behind the round")
    admin.client_unpause()
    for caller in [leader, broken, fine]:
        caller.join(10)
        assert not caller.is_alive()
    assert isinstance(broken.error, TypeError), broken.error
    assert leader.error is None and fine.error is None, (leader.error, fine.error)
    assert inbox_total(admin) - before == 2
