"""The process monitor's CPU of a process tree (the Dramatiq worker forks its
processes): a child it finds late adds only what it uses from then on, not the
CPU it used before it was found. Real processes, real CPU time."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from roomcast.bench import procmon
from roomcast.bench.procmon import ProcMonitor, window_pct

BURN_S = 0.3
# The parent forks its child on "go"; the child burns BURN_S of CPU per "burn" line.
# The parent reads exactly "go\n" from the pipe, so that what follows is the child's.
PARENT = f"""
import os, subprocess, sys
os.read(0, 3)
child = '''
import sys, time
for line in sys.stdin:
    start = time.process_time()
    while time.process_time() - start < {BURN_S}:
        pass
    print("burned", flush=True)
'''
subprocess.run([sys.executable, "-c", child])
"""


@pytest.fixture
def tree() -> Iterator[subprocess.Popen[str]]:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    yield parent
    parent.kill()
    parent.wait(10)
    assert parent.stdin is not None and parent.stdout is not None
    parent.stdin.close()
    parent.stdout.close()


def _burn(parent: subprocess.Popen[str]) -> None:
    assert parent.stdin is not None and parent.stdout is not None
    parent.stdin.write("burn\n")
    parent.stdin.flush()
    assert parent.stdout.readline() == "burned\n"  # the child's line: the CPU is used


def _watched_before_the_child_is_born(tree: subprocess.Popen[str]) -> ProcMonitor:
    """A monitor that looked for the tree's children before the parent forked one."""
    monitor = ProcMonitor()
    monitor.watch("worker", tree.pid, tree=True)
    monitor.sample()  # looks for children: none yet
    assert tree.stdin is not None
    tree.stdin.write("go\n")
    tree.stdin.flush()
    return monitor


def test_a_child_found_late_adds_only_what_it_uses_afterwards(
        tree: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monitor = _watched_before_the_child_is_born(tree)
    _burn(tree)  # the child uses BURN_S
    before = monitor.sample()  # the next look is CHILDREN_EVERY_S away: not found yet
    monkeypatch.setattr(procmon, "CHILDREN_EVERY_S", 0.0)
    found = monitor.sample()  # found now, idle between the two samples
    assert window_pct(before, found, monitor.cores)["worker"] < 50.0

    _burn(tree)  # from now on its CPU counts
    after = monitor.sample()
    assert window_pct(found, after, monitor.cores)["worker"] > 50.0


def test_a_mark_looks_for_children_first(tree: subprocess.Popen[str]) -> None:
    monitor = _watched_before_the_child_is_born(tree)
    _burn(tree)  # the child exists now (it answered)
    start = monitor.mark("start")  # found at once, though CHILDREN_EVERY_S has not passed
    assert len(start.cpu_s["worker"]) == 2  # the parent and its child
    _burn(tree)
    monitor.mark("end")
    assert monitor.cpu_pct("start", "end")["worker"] > 50.0
