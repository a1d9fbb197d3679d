"""The code blocks of a Markdown document, and a runner that executes them as a
reader would: in order, in one process, each Python block in a namespace of its
own (so each one must import what it uses, and can be copied alone).

Conventions the documents follow:
- a block whose first line is a comment naming a file (`# myapp/jobs.py`) is that
  file's content: it is written to disk, never run itself; other blocks import it;
- `# prints: TEXT` at the end of a line says what the block prints, one line each,
  in order: the runner compares;
- `sh` blocks run with bash, `-e`: every command must succeed.

Tracebacks name the document and its line numbers, so a failure points at the
line to fix. The runner itself is stdlib only: `python doc_blocks.py BLOCKS.json`
runs in the environment the test chose (the stack's settings, its working
directory), never with the test's own imports.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

RUNNABLE = ("python", "sh")
_FENCE = re.compile(r"^```(\w*)\s*$")
_FILE = re.compile(r"^# ([\w./-]+\.py)\s*$")
_PRINTS = re.compile(r"#\s*prints: (.*?)\s*$", re.M)


@dataclass(frozen=True)
class Block:
    doc: str  # the document's path, as tracebacks show it
    lang: str
    text: str
    line: int  # the document's line of the block's first line of code

    @property
    def file(self) -> str | None:
        """The path this block is the content of, if it is a file."""
        first = self.text.splitlines()[0] if self.text else ""
        match = _FILE.match(first) if self.lang == "python" else None
        return match.group(1) if match else None

    @property
    def prints(self) -> list[str]:
        return _PRINTS.findall(self.text)


def blocks(path: Path, doc_name: str) -> list[Block]:
    found: list[Block] = []
    lang: str | None = None
    start = 0
    lines: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fence = _FENCE.match(line)
        if lang is None and fence:
            lang, start, lines = fence.group(1), number + 1, []
        elif lang is not None and line.rstrip() == "```":
            found.append(Block(doc_name, lang, "\n".join(lines) + "\n", start))
            lang = None
        elif lang is not None:
            lines.append(line)
    return found


def write_plan(path: Path, plan: list[Block], replace: dict[str, str]) -> None:
    """The blocks to run, with `replace` applied (e.g. the doc's gateway address)."""
    def swap(text: str) -> str:
        for old, new in replace.items():
            text = text.replace(old, new)
        return text
    path.write_text(json.dumps([{**asdict(b), "text": swap(b.text), "prints": b.prints}
                                for b in plan]))


def _run_python(block: dict[str, object]) -> list[str]:
    code = "\n" * (int(str(block["line"])) - 1) + str(block["text"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(block["doc"]), "exec"), {"__name__": "__main__"})
    return out.getvalue().splitlines()


def _run_sh(block: dict[str, object]) -> list[str]:
    result = subprocess.run(["bash", "-e", "-c", str(block["text"])], capture_output=True,
                            text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"exit {result.returncode}: {result.stderr.strip()[-2000:]}")
    return [line for line in result.stdout.splitlines() if line.strip()]


def main(plan_path: str) -> int:
    plan = json.loads(Path(plan_path).read_text())
    for block in plan:
        where = f"{block['doc']}:{block['line']}"
        try:
            printed = _run_python(block) if block["lang"] == "python" else _run_sh(block)
        except BaseException:
            traceback.print_exc()
            print(f"FAILED: the block at {where}", file=sys.stderr)
            return 1
        expected = block["prints"]
        if block["lang"] == "python" and printed != expected:
            print(f"FAILED: the block at {where} printed {printed!r}; the document says "
                  f"{expected!r}", file=sys.stderr)
            return 1
        print(f"ran {where}" + (f": {' | '.join(printed)}" if block["lang"] == "sh" else ""),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
