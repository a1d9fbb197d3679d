"""The interpreter's young-generation threshold, raised for a gateway's heap.

A gateway holds some 35 objects tracked by the cycle collector per connection.
With CPython's default threshold (a young collection every 700 net allocations,
a full one every 100 of those when the old generation has grown by a quarter),
a storm of 10,000 connects ran nine full collections over the growing heap, the
longest 162 ms with the event loop stopped, about a second of the storm in all.
At 10,000 the same storm runs no full collection, its longest pause is a young
one of tens of milliseconds, and one process accepts about 45 % more
connections per second (docs/benchmarks.md). Cyclic garbage waits a little
longer to be freed; nothing else changes.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 10_000


def raise_gc_threshold() -> None:
    """Raise the young threshold to GEN0_THRESHOLD; a higher one, or a collector
    turned off (0), is the embedding process's choice and is kept."""
    gen0, gen1, gen2 = gc.get_threshold()
    if 0 < gen0 < GEN0_THRESHOLD:
        gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
