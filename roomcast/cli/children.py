"""How `roomcast up` (and the bench) start their children.

Each child gets a process group of its own: Ctrl-C in the terminal (SIGINT to the
foreground group) then reaches `up` alone, which stops the children in order,
gateways first, then the worker, then Redis. In the terminal's group, Redis quit
at once and the draining gateways could no longer clean up. Each child also dies
with its parent (Linux's parent-death signal), so a SIGKILLed `up` leaves nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when its parent process goes away."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
