"""raise_if_cancelled: a loop ends on its cancel even when a step swallowed it."""

from __future__ import annotations

import asyncio

from shared.cancellation import raise_if_cancelled


async def step_that_swallows_a_cancel(entered: asyncio.Event) -> None:
    entered.set()
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        pass  # what asyncio.wait_for does on 3.11 when its operation has just completed


async def loop(entered: asyncio.Event, turns: list[int]) -> None:
    while True:
        await step_that_swallows_a_cancel(entered)
        turns.append(1)
        raise_if_cancelled()
        await asyncio.sleep(0.01)


async def test_the_loop_ends_although_its_step_swallowed_the_cancel() -> None:
    entered, turns = asyncio.Event(), []
    task = asyncio.create_task(loop(entered, turns))
    await entered.wait()
    task.cancel()
    async with asyncio.timeout(5):
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and turns == [1]


async def test_a_task_never_asked_to_stop_goes_on() -> None:
    raise_if_cancelled()  # no exception
    assert asyncio.current_task() is not None
