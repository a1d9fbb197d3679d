"""`.roomcast/env`, the file `roomcast up` leaves for other shells: private, read back
exactly, exported verbatim by `roomcast env`, and refused with one line when the
`up` that wrote it is gone. (The live path, with a real `up`, is in
tests/e2e/test_up.py.)"""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from roomcast.cli import stack_env
from tests.support.cli import clean_env, one_line_error, run_cli

TRICKY = {"REDIS_URL": "redis://:p@ss w'rd@127.0.0.1:6399/0", "JWT_SECRET": "a$b`c\"d\\e",
          "ACCESS_MODE": "acl", stack_env.GATEWAYS_VAR: "http://127.0.0.1:8000,http://x:8001"}


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(30)
    return process.pid


def test_the_file_is_private_and_reads_back_exactly(tmp_path: Path) -> None:
    path = stack_env.write(tmp_path, TRICKY, pid=4242)
    assert path == tmp_path / ".roomcast" / "env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert (path.parent / ".gitignore").read_text() == "*\n"  # never committed by accident
    stack = stack_env.read(tmp_path)
    assert stack is not None and stack.values == TRICKY and stack.pid == 4242


def test_exports_survive_a_shell_eval(tmp_path: Path) -> None:
    script = stack_env.exports(TRICKY) + "".join(
        f'printf "%s\\n" "${name}"\n' for name in TRICKY)
    shown = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True,
                           timeout=30).stdout.splitlines()
    assert shown == list(TRICKY.values())


def test_a_file_left_by_a_dead_up_is_refused_in_one_line(tmp_path: Path) -> None:
    stack_env.write(tmp_path, {"JWT_SECRET": "s" * 32, "REDIS_URL": "redis://127.0.0.1:1/0"},
                    pid=_dead_pid())
    for args in (["token", "--user-id", "1", "--username", "a"], ["env"],
                 ["grant", "1", "project:1"]):
        line = one_line_error(run_cli(*args, cwd=tmp_path))
        assert "no longer running" in line and ".roomcast/env" in line
    # with every variable set here the file supplies nothing, and is not in the way
    env = clean_env(JWT_SECRET="t" * 32, REDIS_URL="redis://127.0.0.1:2/0")
    token = run_cli("token", "--user-id", "1", "--username", "a", cwd=tmp_path, env=env)
    assert token.returncode == 0 and "JWT_SECRET from the environment" in token.stderr


def test_env_without_a_file_says_to_run_up(tmp_path: Path) -> None:
    assert "roomcast up" in one_line_error(run_cli("env", cwd=tmp_path))


def test_a_malformed_file_is_one_line(tmp_path: Path) -> None:
    path = stack_env.write(tmp_path, {"JWT_SECRET": "x"}, pid=1)
    path.write_text(path.read_text() + "not a setting\n")
    assert "line 4" in one_line_error(run_cli("token", "--user-id", "1", "--username", "a",
                                              cwd=tmp_path))
