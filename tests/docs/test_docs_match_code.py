"""The user documentation (README.md, docs/*.md) names only settings, commands,
options and codes that exist, with the defaults the code has; every setting and
command is documented; and what users run (`--help`, compose.yaml) agrees too.

The names are taken from the code itself: the Settings class, the argparse
parsers, the CloseCode/ErrorCode enums."""

from __future__ import annotations

import argparse
import re
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from gateway.close_codes import CloseCode, ErrorCode
from gateway.serving import PING_TIMEOUT_INTERVALS
from roomcast.bench.main import parser as bench_parser
from roomcast.cli import stack_env
from roomcast.cli.args import build_parser
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SETTINGS_TABLE = ROOT / "docs" / "operations.md"

# Upper-case names in the docs that are not settings, each with the reason.
NOT_SETTINGS = {
    "JWT_SECRET_PREVIOUS": "SECURITY.md names it as a setting that does not exist",
    "QUEUE_FULL": "a ClientCode of the browser SDK (client-js.md)",
    **{name: "read by the CLI only (.roomcast/env)" for name in stack_env.CLI_VARIABLES},
}
# Codes the docs name that the gateway never sends, each with the reason.
NOT_SENT = {1006: "what a client reports for a connection lost without a close frame"}

_NAME = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")
_CODE = re.compile(r"(?<![\d.,`])\b(10\d\d|4\d\d\d)\b(?!\s*(?:characters|digits|bytes|events|"
                   r"clients|ms|s\b|KiB|MB))")
_FENCE = re.compile(r"```.*?```", re.S)
_SPAN = re.compile(r"`([^`\n]+)`")
# a command's words run to the end of the line or to a shell operator / substitution
_COMMAND = re.compile(r"(?:^|[\s/(\"$])roomcast\s+([a-z][a-z-]*)((?:(?!\$\()[^;&|)`\n])*)")
_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def _text(path: Path) -> str:
    return path.read_text()


def _code_parts(text: str) -> list[str]:
    """Fenced blocks (line by line) and inline code spans: where commands are written."""
    parts = [line for block in _FENCE.findall(text) for line in block.splitlines()]
    parts += _SPAN.findall(_FENCE.sub("", text))
    return parts


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the roomcast parser has no commands")


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


COMMANDS = _subparsers(build_parser())
COMMANDS["bench"] = bench_parser()
# NOT_SETTINGS also holds the placeholders of positional arguments (USER_ID, ...)
NOT_SETTINGS.update({a.dest.upper(): "a placeholder in a command line" for p in COMMANDS.values()
                     for a in p._actions if not a.option_strings and "_" in a.dest})


def _documented_commands() -> list[tuple[Path, str, set[str]]]:
    found = []
    for path in DOCS:
        for part in _code_parts(_text(path)):
            for match in _COMMAND.finditer(part):
                found.append((path, match.group(1), set(_OPTION.findall(match.group(2)))))
    return found


# -- settings ---------------------------------------------------------------------------
@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_upper_case_name_in_the_docs_is_a_setting(path: Path) -> None:
    unknown = {n for n in _NAME.findall(_text(path))
               if n not in Settings.model_fields and n not in NOT_SETTINGS}
    assert not unknown, f"{path.name} names settings that do not exist: {sorted(unknown)}"


def _documented_default(field: str) -> str:
    rows = re.findall(rf"^\| `{field}` \| ([^|]+) \|", _text(SETTINGS_TABLE), re.M)
    assert len(rows) == 1, f"{field}: expected one row in {SETTINGS_TABLE.name}'s table"
    return rows[0].strip()


def _code_default(value: Any) -> str | None:
    if value is None or value == []:
        return None
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_in_the_table_with_its_default(field: str) -> None:
    documented = _documented_default(field)
    expected = _code_default(Settings.model_fields[field].default)
    if expected is None:
        assert documented.startswith("unset"), f"{field}: default is unset, docs: {documented}"
    else:
        assert documented.split()[0] == f"`{expected}`", f"{field}: code {expected}, docs " \
                                                         f"{documented}"


# -- commands ---------------------------------------------------------------------------
def test_the_docs_show_commands_at_all() -> None:
    assert len(_documented_commands()) > 10  # the extraction works


@pytest.mark.parametrize(("path", "command", "options"), _documented_commands(),
                         ids=lambda v: v.name if isinstance(v, Path) else str(v))
def test_documented_commands_and_options_exist(path: Path, command: str,
                                               options: set[str]) -> None:
    assert command in COMMANDS, f"{path.name}: `roomcast {command}` is not a command"
    missing = options - _options(COMMANDS[command])
    assert not missing, f"{path.name}: `roomcast {command}` has no {sorted(missing)}"


def test_every_command_is_in_the_readme() -> None:
    in_readme = {c for p, c, _ in _documented_commands() if p.name == "README.md"}
    assert set(COMMANDS) <= in_readme, sorted(set(COMMANDS) - in_readme)


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_cites_nothing_users_do_not_have(command: str) -> None:
    parser = build_parser() if not command else COMMANDS[command]
    text = parser.format_help()
    assert "SPEC" not in text and "§" not in text and "shared/peers" not in text, text


# -- codes ------------------------------------------------------------------------------
SENT = {int(c) for c in CloseCode} | {int(c) for c in ErrorCode}


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_code_in_the_docs_exists(path: Path) -> None:
    named = {int(c) for c in _CODE.findall(_text(path))}
    unknown = named - SENT - set(NOT_SENT)
    assert not unknown, f"{path.name} names codes the gateway never uses: {sorted(unknown)}"


def test_every_code_is_in_the_protocol_table() -> None:
    table = {int(c) for c in re.findall(r"^\| (\d{4}) \|", _text(ROOT / "docs" / "protocol.md"),
                                        re.M)}
    assert SENT <= table, f"missing from docs/protocol.md's codes: {sorted(SENT - table)}"


def test_the_keepalive_rule_is_stated_once_and_as_configured() -> None:
    """An unanswered WebSocket ping closes with 1011 after PING_TIMEOUT_INTERVALS heartbeat
    intervals (serve.py); both documents that state the rule give that number."""
    words = {2: "two", 3: "three"}[PING_TIMEOUT_INTERVALS]
    for name in ("protocol.md", "SECURITY.md"):
        text = _text(ROOT / "docs" / name)
        rule = [line for line in text.splitlines() if "1011" in line]
        assert rule and all(f"{words} heartbeat intervals" in line for line in rule), (name, rule)


# -- what users run ---------------------------------------------------------------------
def test_compose_passes_every_setting_it_mentions() -> None:
    text = _text(ROOT / "compose.yaml")
    mentioned = {n for n in _NAME.findall(text) if n in Settings.model_fields}
    passed = set(re.findall(r"^\s+([A-Z][A-Z0-9_]+):", text, re.M))
    assert mentioned <= passed, f"compose.yaml mentions but never passes {mentioned - passed}"


# -- paths ---------------------------------------------------------------------------
_TOP = ("gateway", "shared", "workers", "roomcast", "docs", "deploy", "scripts", "sdk-js",
        "examples", "bench", "tests", ".ci")
_PATH = re.compile(rf"(?<![\w./-])((?:{'|'.join(map(re.escape, _TOP))})/[\w./-]*[\w/])")
# made by installs, git-ignored
GENERATED = {"bench/.venv", "bench/node_modules"}
_SOURCES = sorted(p for top in ("gateway", "shared", "workers", "roomcast")
                  for p in (ROOT / top).rglob("*.py"))


def _named_paths(text: str) -> set[str]:
    return {m.rstrip("/.") for m in _PATH.findall(text) if "*" not in m and "<" not in m}


@pytest.mark.parametrize("path", DOCS + _SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_named_exists(path: Path) -> None:
    missing = sorted(p for p in _named_paths(_text(path)) - GENERATED
                     if not (ROOT / p).exists() and not (path.parent / p).exists())
    assert not missing, f"{path.relative_to(ROOT)} names paths that do not exist: {missing}"


def test_every_metric_is_in_the_operations_guide() -> None:
    from gateway.metrics import Metrics

    names = {m.name.removesuffix("_total") for m in Metrics().registry.collect()}
    text = _text(SETTINGS_TABLE)
    assert names and not {n for n in names if f"`{n}" not in text}
