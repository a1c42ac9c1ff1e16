"""
Yanks (PEP 592), without I/O: what a reason may be, how a change to the
yanks of some files becomes new per-project yank maps for
L{pypid.index.model.IndexSnapshot.with_yanks}, and the directory store's
yank file as text (L{YankLines}), which people edit too.

The yank file: UTF-8 text, one yanked file a line, its file name, then
after spaces the reason (or nothing). Blank lines and lines starting with
C{#} are kept as they are; a file named twice takes the last line's reason.
"""

from __future__ import annotations

from typing import Iterable, Mapping, NamedTuple, Optional

from pypid.index.filenames import parse_filename

#: Longest reason, in characters (Warehouse has no limit; a reason is one
#: line on a web page and in pip's warning).
MAX_REASON = 500

HEADER = (
    "# Yanked files (PEP 592), read by pypid: one file a line, its file name, then\n"
    "# the reason (or nothing). Installers skip a yanked file unless a requirement\n"
    "# pins its version with ==. Edit freely: pypid reads this file again when it\n"
    "# changes, and keeps these comments when it rewrites it (pypid yank/unyank).\n"
)


class BadReason(ValueError):
    """A yank reason that cannot be stored: too long, or with control characters."""


def check_reason(reason: str) -> str:
    """
    C{reason} without surrounding spaces, or L{BadReason}: at most
    L{MAX_REASON} characters, one line of printable text.
    """
    reason = reason.strip()
    if len(reason) > MAX_REASON:
        raise BadReason(f"the reason is {len(reason)} characters long; at most {MAX_REASON} are kept")
    if any(not (c.isprintable() or c == " ") for c in reason):
        raise BadReason("the reason must be one line of printable text (no control characters)")
    return reason


def changed_yanks(
    yanks: Mapping[str, Mapping[str, str]],
    files: Iterable[tuple[str, str]],
    reason: Optional[str],
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """
    Yank the files C{(project key, file name)} with C{reason}, or unyank them
    (C{reason} L{None}), starting from C{yanks} (by project key, file name ->
    reason).

    @return: the new yank maps of the projects touched (for
        L{pypid.index.model.IndexSnapshot.with_yanks}) and the file names
        whose state changed.
    """
    changes: dict[str, dict[str, str]] = {}
    changed: list[str] = []
    for key, filename in files:
        current = changes.get(key)
        if current is None:
            current = changes[key] = dict(yanks.get(key, {}))
        if current.get(filename) == reason:
            continue
        if reason is None:
            del current[filename]
        else:
            current[filename] = reason
        changed.append(filename)
    return changes, changed


def by_project(entries: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """File name -> reason, grouped by the project key each file name says."""
    grouped: dict[str, dict[str, str]] = {}
    for filename, reason in entries.items():
        parsed = parse_filename(filename)
        if parsed is not None:
            grouped.setdefault(parsed.project, {})[filename] = reason
    return grouped


def _entry(line: str) -> Optional[tuple[str, str]]:
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    parts = stripped.split(None, 1)
    return parts[0], parts[1].strip() if len(parts) > 1 else ""


class YankLines:
    """
    The lines of a yank file, kept in order so that a rewrite changes only
    the lines of the files it yanks or unyanks (comments and the order of
    the rest stay).
    """

    def __init__(self, lines: Optional[list[str]] = None) -> None:
        self.lines = list(lines or [])
        #: Lines that name no distribution file: (line number, text).
        self.problems: list[tuple[int, str]] = []
        self.entries: dict[str, str] = {}
        for number, line in enumerate(self.lines, 1):
            entry = _entry(line)
            if entry is None:
                continue
            if parse_filename(entry[0]) is None:
                self.problems.append((number, line.strip()))
                continue
            self.entries[entry[0]] = entry[1]

    @classmethod
    def parse(cls, text: str) -> "YankLines":
        if text.startswith("\ufeff"):
            text = text[1:]
        return cls(text.splitlines())

    @classmethod
    def new(cls) -> "YankLines":
        return cls(HEADER.splitlines())

    def set(self, filename: str, reason: Optional[str]) -> None:
        """Yank C{filename} with C{reason} (its line replaced, or added at the end), or unyank it (L{None})."""
        kept: list[str] = []
        placed = False
        for line in self.lines:
            entry = _entry(line)
            if entry is not None and entry[0] == filename:
                if reason is not None and not placed:
                    kept.append(_line(filename, reason))
                    placed = True
                continue
            kept.append(line)
        if reason is not None and not placed:
            kept.append(_line(filename, reason))
        self.lines = kept
        if reason is None:
            self.entries.pop(filename, None)
        else:
            self.entries[filename] = reason

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)


def _line(filename: str, reason: str) -> str:
    return f"{filename} {reason}" if reason else filename


class YankRead(NamedTuple):
    """What a read of the yank file found."""

    #: File name -> reason.
    entries: dict[str, str]
    #: (line number, text) of the lines that name no distribution file.
    problems: list[tuple[int, str]]
    #: Why the file could not be read (its yanks are then kept as they were), or L{None}.
    error: Optional[str] = None
    #: Which read this is: a later read has a higher number.
    version: int = 0
