"""Every `harness …` command that a message or a document names exists, with its options."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from harness.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
HINT = re.compile(r"`harness( [^`]*)?`")
FILES = sorted([*REPO.glob("harness/**/*.py"), *REPO.glob("reports/**/*.py"), *REPO.glob("analysis/**/*.py"),
                REPO / "README.md", *REPO.glob("docs/*.md")])


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def _hints() -> list[tuple[str, str]]:
    found = []
    for path in FILES:
        for match in HINT.finditer(path.read_text(encoding="utf-8")):
            found.append((f"{path.relative_to(REPO)}", match.group(0)))
    return found


def _problem(hint: str) -> str:
    words = [w for w in hint.strip("`").split()[1:]
             if not w.startswith(("{", "<", "$", "[")) and "…" not in w and "..." not in w]
    for i, word in enumerate(words):
        if "|" in word and not word.startswith("-"):  # `harness baseline save|list`: each one
            return "; ".join(p for alt in word.split("|")
                             if (p := _problem(" ".join(["harness", *words[:i], alt, *words[i + 1:]]))))
    parser = build_parser()
    if not words or words[0].startswith("-"):
        return "" if all(w in _options(parser) for w in words if w.startswith("--")) else "unknown option"
    commands = _subparsers(parser)
    if words[0] not in commands:
        return f"no command {words[0]!r}"
    parser = commands[words[0]]
    nested = _subparsers(parser)
    if nested and len(words) > 1 and not words[1].startswith("-"):
        if words[1] not in nested:
            return f"no command {words[0]} {words[1]!r}"
        parser = nested[words[1]]
    unknown = [w.split("=")[0] for w in words if w.startswith("--") and w.split("=")[0] not in _options(parser)]
    return f"unknown options {unknown}" if unknown else ""


def test_hints_are_found_at_all():
    assert len(_hints()) > 20


@pytest.mark.parametrize("where, hint", _hints())
def test_every_hint_names_a_real_command(where: str, hint: str):
    assert _problem(hint) == "", f"{where}: {hint}"
