"""Counted nouns and sizes for pages and logs: C{1 project}, C{2 projects}, C{3.2 MiB}, C{48.0 KiB}. Pure."""

from __future__ import annotations

from typing import Optional


def plural(count: int, noun: str, nouns: Optional[str] = None) -> str:
    """C{noun} as C{count} of them need it: the plural is C{nouns}, else C{noun + "s"}."""
    return noun if count == 1 else (nouns if nouns is not None else noun + "s")


def counted(count: int, noun: str, nouns: Optional[str] = None) -> str:
    """C{"1 project"}, C{"0 projects"}, C{"2 entries"} (with C{nouns="entries"})."""
    return f"{count} {plural(count, noun, nouns)}"


def mib(size: int) -> str:
    """C{3.2 MiB}: a size in bytes for people."""
    return f"{size / 1048576:.1f} MiB"


def human_size(size: int) -> str:
    """A size in bytes in the unit that fits it: C{1536} -> C{"1.5 KiB"}, C{1023} -> C{"1023 bytes"}."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return counted(size, "byte") if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return counted(size, "byte")
