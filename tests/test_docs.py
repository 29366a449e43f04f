"""The documentation stays true to the code: every `amg ...` command line shown in a ```bash block of README.md
or docs/*.md parses with AMG's own argument parser, the README stays short, and every relative link points to a
file that exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_LIMIT = 12 * 1024

_FENCE = re.compile(r"^[ \t]*```(\w*)[ \t]*$")
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def code_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(language, lines) of every fenced code block, fences may be indented (inside list items)."""
    blocks, language, lines = [], None, []
    for line in text.splitlines():
        fence = _FENCE.match(line)
        if fence and language is None:
            language, lines = fence.group(1), []
        elif line.strip() == "```" and language is not None:
            blocks.append((language, lines))
            language = None
        elif language is not None:
            lines.append(line)
    return blocks


def shell_lines(lines: list[str]) -> list[str]:
    """Logical lines of a shell block: `\\` continuations joined."""
    joined, current = [], ""
    for line in lines:
        stripped = line.strip()
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        joined.append(current + stripped)
        current = ""
    if current:
        joined.append(current)
    return [line for line in joined if line]


def amg_commands(page: Path) -> list[list[str]]:
    """The argument lists of every `amg ...` command in the page's bash blocks (each command of a `&&` chain, an
    environment assignment before it allowed; comments dropped)."""
    commands = []
    for language, lines in code_blocks(page.read_text(encoding="utf-8")):
        if language != "bash":
            continue
        for line in shell_lines(lines):
            for part in re.split(r"\s*(?:&&|;|\|\|)\s*", line):
                words = shlex.split(part, comments=True)
                while words and _ENV_ASSIGNMENT.match(words[0]):
                    words = words[1:]
                if words and words[0] == "amg":
                    commands.append(words[1:])
    return commands


COMMANDS = [(page.relative_to(ROOT).as_posix(), args) for page in PAGES for args in amg_commands(page)]


def test_the_docs_show_amg_commands():
    assert len(COMMANDS) >= 20, "the bash blocks of README.md and docs/*.md hold fewer `amg` commands than expected"
    assert {args[0] for _, args in COMMANDS} >= {"run", "train", "preprocess", "motion", "live", "eval", "serve"}


@pytest.mark.parametrize(("page", "args"), COMMANDS, ids=[f"{p}: amg {' '.join(a)}" for p, a in COMMANDS])
def test_command_parses(page, args, capsys):
    from amg.cli import build_parser

    try:
        build_parser().parse_args(args)
    except SystemExit as exc:  # argparse's answer to a bad command line
        pytest.fail(f"{page}: `amg {shlex.join(args)}` does not parse: {capsys.readouterr().err.strip()} ({exc})")


def test_readme_is_short():
    size = README.stat().st_size
    assert size <= README_LIMIT, f"README.md is {size} bytes; keep it under {README_LIMIT} (details go in docs/)"


def relative_links(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks hold no links
    text = re.sub(r"`[^`\n]*`", "", text)  # nor do code spans
    return [target for target in _LINK.findall(text) if not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target)]


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_relative_links_exist(page):
    missing = []
    for target in relative_links(page):
        path = target.split("#", 1)[0]
        if path and not (page.parent / path).exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_readme_shows_the_picture():
    assert "](docs/images/demo.jpg)" in README.read_text(encoding="utf-8")
    assert (ROOT / "docs" / "images" / "demo.jpg").stat().st_size < 100_000
