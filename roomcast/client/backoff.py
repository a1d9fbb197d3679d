"""Reconnect delays: exponential backoff with full jitter.

Full jitter (a uniform draw between 0 and the exponential ceiling) spreads
thousands of clients that lost the same gateway over the whole window instead
of bringing them back in synchronized waves.
"""

from __future__ import annotations

import random

DEFAULT_BASE = 0.2
DEFAULT_CAP = 10.0
# After 1012 (server restart) / 1013 (slow consumer) the server asks us to come
# back now; a little jitter still keeps a drained gateway's clients apart.
DEFAULT_RESTART_JITTER = 0.5

# 2.0 ** 64 is far past any sane cap; clamping the exponent avoids OverflowError.
_MAX_EXPONENT = 64


def ceiling(attempt: int, base: float = DEFAULT_BASE, cap: float = DEFAULT_CAP) -> float:
    """The largest delay allowed for a 0-based attempt: min(cap, base * 2**attempt)."""
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    return min(cap, base * 2.0 ** min(attempt, _MAX_EXPONENT))


def full_jitter(
    attempt: int,
    rng: random.Random,
    base: float = DEFAULT_BASE,
    cap: float = DEFAULT_CAP,
) -> float:
    """A delay drawn uniformly from [0, ceiling(attempt)]."""
    return rng.uniform(0.0, ceiling(attempt, base, cap))


class Backoff:
    """Counts consecutive failures and turns them into delays.

    The random source is injectable so tests get reproducible delays.
    """

    def __init__(
        self,
        base: float = DEFAULT_BASE,
        cap: float = DEFAULT_CAP,
        restart_jitter: float = DEFAULT_RESTART_JITTER,
        rng: random.Random | None = None,
    ) -> None:
        if base <= 0 or cap <= 0 or restart_jitter < 0:
            raise ValueError("base and cap must be > 0, restart_jitter >= 0")
        self.base = base
        self.cap = cap
        self.restart_jitter = restart_jitter
        self.rng = rng if rng is not None else random.Random()
        self.attempt = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one more failure."""
        delay = full_jitter(self.attempt, self.rng, self.base, self.cap)
        self.attempt += 1
        return delay

    def restart_delay(self) -> float:
        """A short delay for "come back now" closes; resets the failure count."""
        self.reset()
        return self.rng.uniform(0.0, self.restart_jitter)

    def reset(self) -> None:
        """Forget past failures (call once a connection is established)."""
        self.attempt = 0
