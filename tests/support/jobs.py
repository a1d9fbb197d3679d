"""What the worker still has to do, read from Redis: the probe behind "all jobs done"."""

from __future__ import annotations

import redis

from workers.broker import NAMESPACE, QUEUE_NAME


def jobs_outstanding(db: redis.Redis) -> int:
    """Jobs queued, delayed, or fetched by a live or dead worker and not yet acked."""
    return sum(int(db.hlen(f"{NAMESPACE}:{name}.msgs"))
               for name in (QUEUE_NAME, f"{QUEUE_NAME}.DQ"))
