"""Client-side rate limit for outgoing frames (a token bucket).

The gateway answers bursts past WS_RATE_LIMIT/WS_RATE_BURST with 4429 errors,
and rejoining many rooms plus flushing an offline queue after a reconnect is
exactly such a burst; pacing slightly below the server's limit avoids it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Pacer:
    """Hands out send slots at `rate` per second with bursts of up to `burst`.

    Slots are reserved at call time, so concurrent senders get distinct slots
    without a lock. `clock` is injectable for tests.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def reserve(self) -> float:
        """Take one slot; return how long to wait before using it (0 if now)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        self._tokens -= 1.0
        # A negative balance is a queue of reservations; each waits its turn.
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)
