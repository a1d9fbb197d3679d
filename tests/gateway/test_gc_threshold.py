"""The gateway raises the collector's young threshold when it starts, so that a
heap of many connections is not walked by full collections during a connect
storm (see gateway/gc_threshold.py for what was measured)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway.app import create_app
from gateway.gc_threshold import GEN0_THRESHOLD, raise_gc_threshold
from shared.settings import Settings
from tests.support.redis_fixture import RedisUnderTest


@pytest.fixture
def default_threshold() -> Iterator[tuple[int, int, int]]:
    """CPython's defaults for the test, the process's own restored after it."""
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield gc.get_threshold()
    gc.set_threshold(*saved)


def test_the_default_young_threshold_is_raised_and_the_older_ones_kept(
        default_threshold: tuple[int, int, int]) -> None:
    raise_gc_threshold()
    assert gc.get_threshold() == (GEN0_THRESHOLD, 10, 10)


@pytest.mark.parametrize("chosen", [0, GEN0_THRESHOLD * 5], ids=["collector-off", "higher"])
def test_an_embedding_process_choice_is_kept(default_threshold: tuple[int, int, int],
                                             chosen: int) -> None:
    gc.set_threshold(chosen, 20, 30)
    raise_gc_threshold()
    assert gc.get_threshold() == (chosen, 20, 30)


async def test_the_gateway_raises_it_when_it_starts(
        default_threshold: tuple[int, int, int], redis_server: RedisUnderTest) -> None:
    app = create_app(Settings(REDIS_URL=redis_server.url, JWT_SECRET="x" * 40),
                     instance_id="gw-gc")
    assert gc.get_threshold()[0] == 700  # building the app changes nothing yet
    async with app.router.lifespan_context(app):
        assert gc.get_threshold()[0] == GEN0_THRESHOLD
