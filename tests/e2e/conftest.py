"""Defaults for the contract modules (both engines): `stack` is the module's shared
engine stack and `backend` publishes to it. A module that needs its own settings (or
the Redis-only `Stack`) defines its own `stack`, and `backend` follows it."""

from __future__ import annotations

import pytest

from tests.support.engine_stack import EngineStack
from workers.api import Backend


@pytest.fixture(scope="module")
def stack(engine_stack: EngineStack) -> EngineStack:
    return engine_stack


@pytest.fixture
def backend(stack: EngineStack) -> Backend:
    return stack.backend
