"""The Dramatiq broker, set up before any actor is declared.

Without an explicit broker Dramatiq silently creates a RabbitMQ one on
localhost; importing this module first makes the Redis broker the global one.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from shared.settings import Settings

QUEUE_NAME = "roomcast"
NAMESPACE = "roomcast-dramatiq"


def build_broker(settings: Settings) -> RedisBroker:
    return RedisBroker(url=settings.broker_url, namespace=NAMESPACE)


def install_broker(settings: Settings) -> RedisBroker:
    broker = build_broker(settings)
    dramatiq.set_broker(broker)
    return broker
