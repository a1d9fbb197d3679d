"""`.roomcast/env`: how a second shell finds the stack `roomcast up` started.

`up` writes the settings its processes run with (REDIS_URL, JWT_SECRET,
ACCESS_MODE, any other roomcast setting it was given) and the gateway URLs to
`.roomcast/env` in its working directory, readable by the owner only (it holds
the signing secret), and removes the file when it stops. A command run in that
directory fills in every variable that is unset in its environment from the
file, so `roomcast publish` or `roomcast token` in another terminal talk to the
same Redis and sign with the same secret as the running stack.

The file is `KEY=value` lines (values shell-quoted) under a header naming the
pid of the `up` that wrote it: a file whose `up` is gone (killed, crashed) is
refused with one line rather than silently pointing at a dead stack.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import psutil

from roomcast.cli.errors import CliError

ENV_DIR = ".roomcast"
ENV_NAME = "env"
# Read by the CLI only (not by the servers): the http:// base URLs of the gateways.
GATEWAYS_VAR = "ROOMCAST_GATEWAY_URLS"
CLI_VARIABLES = (GATEWAYS_VAR,)

_HEADER = ("# written by roomcast up (pid {pid}); removed when it stops.\n"
           "# Holds the stack's JWT_SECRET: keep it private (mode 0600).\n")
_HEADER_PID = re.compile(r"^# written by roomcast up \(pid (\d+)\)")
_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def env_path(directory: Path) -> Path:
    return directory / ENV_DIR / ENV_NAME


@dataclass(frozen=True)
class StackEnv:
    path: Path
    values: dict[str, str]
    pid: int | None

    def is_live(self) -> bool:
        """The `roomcast up` that wrote the file still runs (a reused pid does not count)."""
        if self.pid is None:
            return False
        try:
            cmdline = psutil.Process(self.pid).cmdline()
        except psutil.Error:
            return False
        return "up" in cmdline and any("roomcast" in part for part in cmdline)

    def require_live(self) -> None:
        if not self.is_live():
            raise CliError(f"{self.path} is left over from a roomcast up that is no longer "
                           f"running (pid {self.pid}); start roomcast up again, or delete it")


def write(directory: Path, values: dict[str, str], pid: int) -> Path:
    """Write the file with mode 0600 (the directory 0700), replacing any old one."""
    folder = directory / ENV_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():  # a secret must not land in the user's repository
        ignore.write_text("*\n")
    path = env_path(directory)
    temporary = folder / f".{ENV_NAME}.{pid}.tmp"
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(_HEADER.format(pid=pid))
        for name, value in values.items():
            out.write(f"{name}={shlex.quote(value)}\n")
    os.replace(temporary, path)  # readers never see half a file
    return path


def read(directory: Path) -> StackEnv | None:
    """The file in `directory`, or None when there is none."""
    path = env_path(directory)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    header = _HEADER_PID.match(text)
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise CliError(f"{path}, line {number}: {exc}", code=2) from None
        if not words:
            continue
        name, sep, value = words[0].partition("=")
        if len(words) != 1 or not sep or not _NAME.match(name):
            raise CliError(f"{path}, line {number}: expected NAME=value", code=2)
        values[name] = value
    return StackEnv(path, values, int(header.group(1)) if header else None)


def remove(directory: Path, pid: int) -> None:
    """Remove the file if the `up` with this pid wrote it (not a newer one)."""
    stack = read(directory)
    if stack is not None and stack.pid == pid:
        stack.path.unlink(missing_ok=True)


def exports(values: dict[str, str]) -> str:
    """`export NAME=value` lines, for `eval "$(roomcast env)"`."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in values.items())


def source(name: str, origins: dict[str, str]) -> str:
    """Where a setting came from, for a message: `REDIS_URL from .roomcast/env`."""
    origin = origins.get(name)
    if origin is None:
        return f"the default {name}; no {ENV_DIR}/{ENV_NAME} here"
    return f"{name} from {origin}"


def fill_environ(stack: StackEnv, environ: dict[str, str] | os._Environ[str]) -> list[str]:
    """Set every variable of the file that is unset (or empty) here; the names set.

    A stale file is refused only when it would actually supply something."""
    missing = [name for name in stack.values if not environ.get(name)]
    if missing:
        stack.require_live()
    for name in missing:
        environ[name] = stack.values[name]
    return missing
