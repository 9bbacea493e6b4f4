"""docs/troubleshooting.md stays true: each example message there is made of text the code
still prints (f-string fields match any text), and the advice clauses without paths or
numbers are printed word for word."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "troubleshooting.md"
PREFIXES = ("error: ", "warning: ", "stopped: ")
#: a clause that names an instance (a path, a number, an elided part) is not checked word for
#: word; every other clause must be text the code prints
INSTANCE = re.compile(r"[0-9/<']|\.\.\.|\(by the OS\)|^[\w-]+(\.[\w-]+)+$")  # OS words, keys
#: shorter clauses ("exit 2", a key) say too little to check
MIN_CLAUSE = 12


def _examples() -> list[str]:
    """The message lines of the page's ```text blocks, without their ``error: `` prefix."""
    blocks = re.findall(r"```text\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    return [line.split(": ", 1)[1] for block in blocks for line in block.splitlines()
            if line.startswith(PREFIXES)]


def _clauses(message: str) -> list[str]:
    """``message`` split at '; ' and ': ', without parenthesised asides (which may quote
    another program: torch's or the OS's reason)."""
    message = re.sub(r"\(\w+Error\)", "(by the OS)", message)  # kept: marks the OS's words
    while re.search(r"\([^()]*\)", message.replace("(by the OS)", "")):
        message = re.sub(r"\((?!by the OS\))[^()]*\)", "", message)
    return [c for part in message.split("; ") for c in part.split(": ") if c]


@cache
def _templates() -> tuple[str, list[re.Pattern[str]]]:
    """The code's text, and each clause of its string literals as a pattern (an f-string
    field matches any text); literals split over lines are joined first."""
    files = [*(ROOT / "mvcore").rglob("*.py"), *(ROOT / "plugins").glob("*/src/**/*.py")]
    text = "\n".join(f.read_text(encoding="utf-8") for f in files)
    text = re.sub(r"([\"'])\s*\n\s*(?:[rf]{0,2})([\"'])", "", text)
    patterns = []
    for literal in re.findall(r"[rf]{0,2}\"((?:[^\"\\\n]|\\.)*)\"", text):
        for clause in _clauses(literal):
            pieces = re.split(r"\{[^{}]*\}", clause)
            if sum(map(len, pieces)) < MIN_CLAUSE:
                continue  # mostly fields: would match anything
            patterns.append(re.compile(".+".join(re.escape(p) for p in pieces)))
    return text, patterns


def _printed(clause: str) -> bool:
    text, patterns = _templates()
    return clause in text or any(p.fullmatch(clause) for p in patterns)


def test_the_page_has_examples():
    assert len(_examples()) >= 15


def test_every_example_is_made_of_text_the_code_prints():
    """At least one clause of each example is printed by the code (so a reworded message
    is noticed), and every clause that names no instance is."""
    unknown = [e for e in _examples()
               if not any(_printed(c) for c in _clauses(e) if len(c) >= MIN_CLAUSE)]
    assert not unknown, unknown
    stale = [(e, c) for e in _examples() for c in _clauses(e)
             if not INSTANCE.search(c) and len(c) >= MIN_CLAUSE and not _printed(c)]
    assert not stale, stale
