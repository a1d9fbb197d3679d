"""A backend's event types, registered for one test and gone after it.

The registry is one per process, and other tests compare what the CLI (a fresh
process, built-in types only) says with what this process knows; so a test that
needs a registered type imports its module through `registered`, never at the
top of a test module (collection would register it for the whole session)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from shared import events

_REGISTERED_BY: dict[str, list[events.EventType]] = {}


@contextmanager
def registered(module: str) -> Iterator[None]:
    """The types `module` registers, in the registry until the block ends."""
    before = dict(events._REGISTRY)
    try:
        if module in sys.modules:
            for spec in _REGISTERED_BY.get(module, []):
                events._REGISTRY[spec.name] = spec
        else:
            importlib.import_module(module)
            _REGISTERED_BY[module] = [s for n, s in events._REGISTRY.items() if n not in before]
        yield
    finally:
        events._REGISTRY.clear()
        events._REGISTRY.update(before)
