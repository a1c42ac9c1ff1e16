"""Counted nouns for pages and logs: C{1 project}, C{2 projects}. Pure."""

from __future__ import annotations

from typing import Optional


def plural(count: int, noun: str, nouns: Optional[str] = None) -> str:
    """C{noun} as C{count} of them need it: the plural is C{nouns}, else C{noun + "s"}."""
    return noun if count == 1 else (nouns if nouns is not None else noun + "s")


def counted(count: int, noun: str, nouns: Optional[str] = None) -> str:
    """C{"1 project"}, C{"0 projects"}, C{"2 entries"} (with C{nouns="entries"})."""
    return f"{count} {plural(count, noun, nouns)}"
