"""What the workers still have to do, read from Redis: the probe behind "all jobs done"."""

from __future__ import annotations

import redis

from shared import keys
from tests.support.stack import SHARDS


def jobs_outstanding(db: redis.Redis, shards: int = SHARDS) -> int:
    """Jobs queued or taken by a worker and not yet completed, over every shard (a
    completed job is deleted from its inbox in the same step that appends it)."""
    return sum(int(db.xlen(keys.inbox(shard))) for shard in range(shards))
