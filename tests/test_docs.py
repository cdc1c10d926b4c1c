"""The docs cannot drift from the code unnoticed: every fenced block in README.md and docs/ says whether a test runs
it, the cheap ones run from the repo root, and every relative link points at a file (and heading) that exists.

The convention (docs/development.md, "Code blocks in the docs"): the line right before a fence is a marker,
``<!-- run -->`` (this test runs each command), ``<!-- illustrative -->`` (a user adapts it, or it costs too much to
run), ``<!-- output -->`` (not typed: output, a tree, a diagram) or ``<!-- walkthrough:start -->`` (the README's
own-data commands, run by tests/data/test_walkthrough.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKERS = ("run", "illustrative", "output", "walkthrough:start")
SHELL_INFO = ("bash", "sh", "shell", "console")
COMMAND_TIMEOUT_S = 60

FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
MARKER = re.compile(r"^\s*<!--\s*(?P<name>\S+)\s*-->\s*$")
LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*#*\s*$")


def doc_files() -> list[Path]:
    """The files whose code blocks must be marked: the front page and every docs/ page."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def linked_files() -> list[Path]:
    """The files whose relative links must resolve: the docs, plus the indexes of studies/ and benchmarks/."""
    return [*doc_files(), ROOT / "studies" / "README.md", ROOT / "benchmarks" / "README.md"]


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    """1-based line of the opening fence."""
    end: int
    """1-based line of the closing fence (the last line, for a block left open)."""
    info: str
    marker: str | None
    """The marker comment on the line right before the fence, if any."""
    body: str

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path}:{self.line}"


def code_blocks(path: Path, text: str) -> Iterator[Block]:
    """Every fenced block of a markdown text, with the marker line before it."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        close = re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        body = "\n".join(line.removeprefix(indent) for line in lines[i + 1 : j])
        marker = MARKER.match(lines[i - 1]) if i > 0 else None
        name = marker["name"] if marker else None
        yield Block(path, i + 1, min(j + 1, len(lines)), m["info"].strip(), name, body)
        i = j + 1


def prose(text: str) -> str:
    """The text with fenced blocks blanked out (their lines kept, so line numbers stay right)."""
    lines = text.splitlines()
    for block in code_blocks(Path("-"), text):
        for k in range(block.line - 1, block.end):
            lines[k] = ""
    return "\n".join(lines)


def marking_errors(blocks: list[Block]) -> list[str]:
    """What breaks the convention: a block without a marker, an unknown marker, a `run` block that is not shell."""
    errors = []
    for b in blocks:
        if b.marker is None:
            errors.append(f"{b.where()}: unmarked code block; put one of {MARKERS} as <!-- ... --> right before it")
        elif b.marker not in MARKERS:
            errors.append(f"{b.where()}: unknown marker <!-- {b.marker} -->; expected one of {MARKERS}")
        elif b.marker == "run" and b.info.split()[:1] not in [[s] for s in SHELL_INFO]:
            errors.append(f"{b.where()}: a `run` block must be shell ({', '.join(SHELL_INFO)}), not {b.info!r}")
    return errors


def commands(body: str) -> list[str]:
    """The shell commands of a block: continuation lines joined, blank lines and comment lines dropped."""
    joined = body.replace("\\\n", " ")
    return [c.strip() for c in joined.splitlines() if c.strip() and not c.strip().startswith("#")]


def github_slug(title: str) -> str:
    """The anchor GitHub gives a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = INLINE_CODE.sub(lambda m: m[0].strip("`"), title).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The heading anchors of a markdown text (repeated headings get GitHub's -1, -2, ... suffixes)."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose(text).splitlines():
        m = HEADING.match(line)
        if not m:
            continue
        slug = github_slug(m["title"])
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def link_errors(path: Path, text: str) -> list[str]:
    """Relative links (outside code) to a missing file, or to a heading the target markdown file does not have."""
    errors = []
    for lineno, line in enumerate(prose(text).splitlines(), start=1):
        for m in LINK.finditer(INLINE_CODE.sub("", line)):
            target = m["target"]
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{lineno}"
            if not dest.exists():
                errors.append(f"{where}: link to {target} points at a missing file {dest}")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
                errors.append(f"{where}: link to {target}: {dest.name} has no heading #{anchor}")
    return errors


def run_blocks() -> list[Block]:
    return [b for p in doc_files() for b in code_blocks(p, p.read_text()) if b.marker == "run"]


def test_every_code_block_is_marked():
    blocks = [b for p in doc_files() for b in code_blocks(p, p.read_text())]
    assert blocks, "no code blocks found: the parser is broken"
    errors = marking_errors(blocks)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("block", run_blocks(), ids=Block.where)
def test_run_block_commands_succeed(block: Block):
    cmds = commands(block.body)
    assert cmds, f"{block.where()}: a `run` block without commands"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for cmd in cmds:
        res = subprocess.run(
            ["bash", "-o", "pipefail", "-c", cmd],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )
        assert res.returncode == 0, f"{block.where()}: `{cmd}` exited {res.returncode}\n{res.stderr[-2000:]}"


def test_relative_links_resolve():
    errors = [e for p in linked_files() for e in link_errors(p, p.read_text())]
    assert not errors, "\n".join(errors)


def test_the_checks_catch_what_they_claim(tmp_path):
    """On a planted page: an unmarked block, an unknown marker, a non-shell `run` block, a missing file and a missing
    heading are each reported; marked blocks, external links and good anchors are not."""
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading: here\n")
    page = tmp_path / "page.md"
    text = (
        "# Page\n\n<!-- run -->\n```bash\necho ok \\\n  --flag\n# a comment\n```\n\n"
        "```bash\nunmarked\n```\n\n<!-- runnable -->\n```bash\nx\n```\n\n<!-- run -->\n```python\nx\n```\n\n"
        "<!-- output -->\n```text\n# not a heading\n```\n\n"
        "[ok](other.md#a-code-heading-here) [web](https://example.com) [self](#page) `[code](nowhere.md)`\n"
        "[gone](missing.md) [bad anchor](other.md#nope) [not-a-heading](#not-a-heading)\n"
    )
    page.write_text(text)
    blocks = list(code_blocks(page, text))
    assert [b.marker for b in blocks] == ["run", None, "runnable", "run", "output"]
    assert commands(blocks[0].body) == ["echo ok    --flag"]
    errors = marking_errors(blocks)
    assert len(errors) == 3 and "unmarked" in errors[0] and "unknown marker" in errors[1] and "python" in errors[2]
    errors = link_errors(page, text)
    assert len(errors) == 3, errors
    assert "missing.md" in errors[0] and "#nope" in errors[1] and "#not-a-heading" in errors[2]
