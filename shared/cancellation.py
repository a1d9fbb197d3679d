"""Loops that run until their task is cancelled must not outlive the cancel.

On Python 3.11, `asyncio.wait_for` returns normally when a cancel arrives just
as the awaited operation completes; redis-py sends every command through it
when a socket timeout is set. The cancel is then gone, the task stays marked as
cancelling, and a `while True` loop would run on: a gateway that never stops.
Such loops call `raise_if_cancelled()` once per turn.
"""

from __future__ import annotations

import asyncio


def raise_if_cancelled() -> None:
    """Raise CancelledError when the current task was asked to stop, even if a
    library swallowed the CancelledError that asked it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
