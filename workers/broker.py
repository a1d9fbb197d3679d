"""The Dramatiq broker, set up before any actor is declared.

Without an explicit broker Dramatiq silently creates a RabbitMQ one on
localhost; importing this module first makes ours the global one: a Redis
broker for ENGINE=redis, Dramatiq's stub broker (actors run in threads of the
gateway process) for ENGINE=memory.

Dramatiq runs the backend's domain jobs and our actors. The publish path itself
(the job queue of `workers.api`) is not a Dramatiq queue: it is consumed, shard by
shard and in order, by `shared.engines.job_runner.JobRunner`, which `JobRunnerMiddleware` starts
in every worker process next to Dramatiq's own threads.

Three things differ from Dramatiq's defaults, all so that no job is lost or
stuck for minutes when a worker or Redis fails (tests/e2e/test_worker_faults.py
and test_redis_faults.py make each failure happen):

- `DurableRetries`: Dramatiq's `Retries` enqueues the retry of a failed job and
  the worker then acks the job. When the job failed *because Redis was down*,
  that enqueue fails too, Dramatiq logs it and acks the job anyway once Redis is
  back: the job is gone. Here the retry's enqueue is itself retried until Redis
  answers, the way Dramatiq already retries the ack.
- `RoomcastRedisBroker`: a fetch whose reply is lost with its connection (Redis
  killed or the connection dropped right after the fetch ran) leaves jobs in the
  worker's ack set that nobody processes; Dramatiq requeues an ack set only when
  its worker stops heartbeating, which a live worker never does. A consumer that
  restarts after such an error therefore takes a new worker identity: the old
  one falls silent, counts as dead after `heartbeat_timeout`, and its jobs are
  requeued (jobs of the old identity still running here are re-run later, which
  the idempotent actors absorb). This needs the error to surface: the broker's
  client must not retry commands on its own (it does not: Dramatiq builds it
  without retries).
- Jobs fetched by a worker that was SIGKILLed sit in its ack set until another
  worker's queue maintenance notices the dead worker (no heartbeat for
  `heartbeat_timeout`); maintenance runs on a random `maintenance_chance` per
  million broker commands. Dramatiq's 60 s and 0.1 % leave such jobs waiting
  for minutes on a quiet queue. Our actors are short (milliseconds) and
  idempotent (the publish is deduplicated by event key; grants are set
  operations), so a worker wrongly declared dead costs a harmless re-run.
"""

from __future__ import annotations

import logging
import time
import uuid
from importlib.metadata import version
from typing import Any

import dramatiq
from dramatiq import Broker
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.brokers.stub import StubBroker
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import CurrentMessage, Middleware, Retries, default_middleware
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.engines import build_engine
from shared.engines.job_runner import JobRunner
from shared.events import import_event_modules
from shared.settings import Engine, Settings

log = logging.getLogger("roomcast.broker")

QUEUE_NAME = "roomcast"
NAMESPACE = "roomcast-dramatiq"

HEARTBEAT_TIMEOUT_MS = 10_000  # a worker silent this long is dead; its jobs are requeued
# Per million broker commands (Dramatiq: 1000). Maintenance costs two ZRANGEBYSCOREs
# on small sets while no worker is dead. Dramatiq's maintenance also runs a KEYS
# over the broker's database per dead worker, until that worker's ack sets are
# gone: how many times does not depend on this chance, only how soon. On every
# command, a dead worker's jobs are requeued as soon as HEARTBEAT_TIMEOUT_MS passes.
MAINTENANCE_CHANCE = 1_000_000
RETRY_ENQUEUE_BACKOFF_CAP = 2.0
WAKE_TOKENS = 64
WAKE_TTL_SECONDS = 3600
SATURATED_PAUSE = 0.005


def _wake_key(queue_name: str) -> str:
    return f"{NAMESPACE}:{queue_name}.wake"


class DurableRetries(Retries):  # type: ignore[misc]  # dramatiq is untyped here
    """`Retries` whose enqueue of the retry survives a Redis outage (see module doc)."""

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        before = message.options.get("retries")
        delay = 0.05
        while True:
            try:
                super().after_process_message(broker, message, result=result,
                                              exception=exception)
                return
            except (RedisConnectionError, RedisTimeoutError):
                # Redis is down: the job's own failure was probably that. Keep the job
                # (unacked) until its retry is safely queued; the count is restored
                # so that the failed enqueue does not use up a retry.
                if before is None:
                    message.options.pop("retries", None)
                else:
                    message.options["retries"] = before
                self.logger.warning("Redis unavailable; retrying the enqueue of the "
                                    "retry of %r in %.2f s", message.message_id, delay)
                time.sleep(delay)  # backoff while Redis is down
                delay = min(delay * 2, RETRY_ENQUEUE_BACKOFF_CAP)


class WakingConsumer(_RedisConsumer):  # type: ignore[misc]  # dramatiq is untyped here
    """Dramatiq's Redis consumer, woken by a signal instead of polling while idle.

    Dramatiq's consumer has no blocking fetch: idle, it sleeps and fetches again, up
    to its timeout (a second by default, which an idle job waits; 20 ms polls cost 5 %
    of a core). Here every enqueue pushes a token on a list beside the queue, and the
    idle consumer waits on that list with a blocking pop: a job starts at once, and an
    idle worker makes one round trip per timeout. Tokens persist, so a job enqueued
    between a fetch and the wait is not missed."""

    def __init__(self, broker: Any, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, 0)  # Dramatiq's own idle sleep: none
        self._idle_seconds = max(0.01, timeout / 1000)

    def __next__(self) -> Any:
        message = super().__next__()
        if message is None:
            if self.outstanding_message_count < self.prefetch:
                self.broker.wait_for_work(self.queue_name, self._idle_seconds)
            else:  # every prefetched job still running: give them a moment
                time.sleep(SATURATED_PAUSE)
        return message


def check_dramatiq() -> None:
    """The consumer above relies on Dramatiq internals: fail at start, in one line."""
    needed = ("__next__", "outstanding_message_count")
    if not all(hasattr(_RedisConsumer, name) for name in needed):
        raise RuntimeError(f"dramatiq {version('dramatiq')} lacks what roomcast's worker "
                           "uses; install the version pinned in pyproject.toml")


class RoomcastRedisBroker(RedisBroker):  # type: ignore[misc]  # dramatiq is untyped here
    """A RedisBroker whose consumers restart with a new identity after an error, and
    wake on a signal rather than polling (WakingConsumer)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._consumed: set[str] = set()

    @property
    def consumer_class(self) -> type[WakingConsumer]:
        return WakingConsumer

    def enqueue(self, message: Any, *, delay: int | None = None) -> Any:
        enqueued = super().enqueue(message, delay=delay)
        wake = _wake_key(enqueued.queue_name)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.rpush(wake, 1)
            pipe.ltrim(wake, -WAKE_TOKENS, -1)  # a busy worker need not wake many times
            pipe.expire(wake, WAKE_TTL_SECONDS)
            pipe.execute()
        return enqueued

    def wait_for_work(self, queue_name: str, seconds: float) -> None:
        try:
            self.client.blpop([_wake_key(queue_name)], timeout=seconds)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise ConnectionClosed(exc) from None

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        if queue_name in self._consumed:
            # a restart after a connection error: see the module doc
            self.broker_id = str(uuid.uuid4())
            log.warning("consumer of %s restarted; new worker identity %s",
                        queue_name, self.broker_id)
        self._consumed.add(queue_name)
        return super().consume(queue_name, prefetch=prefetch, timeout=timeout)


class JobRunnerMiddleware(Middleware):  # type: ignore[misc]  # dramatiq is untyped here
    """Runs the job-queue consumer in every worker process, beside Dramatiq's threads."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._runner: JobRunner | None = None

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        if self._settings.ENGINE is Engine.MEMORY:
            return  # the memory engine runs its own, in the gateway process
        import_event_modules(self._settings.EVENT_MODULES)
        self._runner = JobRunner(build_engine(self._settings))
        self._runner.start()

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        if self._runner is not None:
            self._runner.stop()
            self._runner = None


def _middleware(settings: Settings) -> list[Middleware]:
    stack = [DurableRetries() if cls is Retries else cls() for cls in default_middleware]
    # CurrentMessage: an actor publishing from inside its job derives its events' keys
    # from the message id, so a retried job appends each event once (workers.api)
    return [*stack, CurrentMessage(), JobRunnerMiddleware(settings)]


def build_broker(settings: Settings) -> Broker:
    if settings.ENGINE is Engine.MEMORY:
        return StubBroker(middleware=_middleware(settings))
    check_dramatiq()
    return RoomcastRedisBroker(url=settings.broker_url, namespace=NAMESPACE,
                               middleware=_middleware(settings),
                               heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
                               maintenance_chance=MAINTENANCE_CHANCE)


def install_broker(settings: Settings) -> Broker:
    broker = build_broker(settings)
    dramatiq.set_broker(broker)
    return broker
