"""Running the `roomcast` command as a user does: a subprocess with a chosen working
directory and environment, and the one-line error rule checked on its output."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from shared.settings import Settings

# Variables a stack or a shell of the developer may have set; tests start from none.
_STACK_PREFIXES = ("REDIS_", "JWT_", "WS_", "DRAMATIQ_", "ROOMCAST_")


def clean_env(**extra: str) -> dict[str, str]:
    """The test process' environment without any roomcast setting, plus `extra`."""
    names = set(Settings.model_fields)
    env = {k: v for k, v in os.environ.items()
           if k not in names and not k.startswith(_STACK_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "roomcast.cli.main", *args], cwd=cwd,
                          env=clean_env() if env is None else env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exactly one line on stderr, no traceback; that line."""
    assert result.returncode != 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("roomcast"), lines[0]
    return lines[0]


def read_until(process: subprocess.Popen[str], pattern: str, deadline: float) -> list[str]:
    """Lines of the process's stdout up to the first that matches `pattern`."""
    assert process.stdout is not None
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if re.search(pattern, line):
            return lines
    raise AssertionError("".join(lines) or "no output")


def close_pipes(process: subprocess.Popen[str]) -> None:
    """Close what the test kept of a finished child's pipes (a leak ResourceWarning names)."""
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()
