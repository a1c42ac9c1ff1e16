"""
The fenced blocks of README.md and docs/*.md, with the marker comment before
each (see docs/development.md, "Commands in the documents are tested").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent.parent
SHELL_LANGUAGES = {"sh", "bash", "shell", "console", "zsh", "shell-session"}
#: Keys a run marker may give, and whether they may repeat.
RUN_KEYS = {
    "before": True, "server": False, "ports": False, "replace": True, "cwd": False,
    "stdin": True, "env": True, "previous-block": False, "needs": True, "after": True,
}
_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})\s*([^`\s]*)")


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass
class Marker:
    kind: str  # "run", "tested-by" or "file"
    #: (key, value) lines of a run marker, in order.
    options: list[tuple[str, str]] = field(default_factory=list)
    #: What tested-by and file name.
    refs: list[str] = field(default_factory=list)

    def get(self, key: str) -> list[str]:
        return [value for k, value in self.options if k == key]


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    marker: Optional[Marker]
    marker_error: Optional[str] = None
    previous: Optional["Block"] = None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def is_shell(self) -> bool:
        return self.language in SHELL_LANGUAGES


class MarkerError(ValueError):
    pass


def parse_marker(comment: str) -> Marker:
    """The marker in C{comment}, the text between C{<!--} and C{-->}."""
    body = comment.strip()
    head, _, rest = body.partition("\n")
    head = head.strip()
    if head.startswith("tested-by:"):
        refs = head[len("tested-by:"):].split() + rest.split()
        if not refs:
            raise MarkerError("tested-by names no test")
        return Marker("tested-by", refs=refs)
    if head.startswith("file:"):
        refs = head[len("file:"):].split()
        if len(refs) != 1 or rest.strip():
            raise MarkerError("file: names exactly one file of the repository")
        return Marker("file", refs=refs)
    if head == "run" or head.startswith("run "):
        lines = [head[3:].strip()] + rest.splitlines()
        marker = Marker("run")
        for line in lines:
            line = line.strip()
            if not line:
                continue
            key, sep, value = line.partition(":")
            key = key.strip()
            if not sep or key not in RUN_KEYS:
                raise MarkerError(f"unknown run option {line!r} (known: {', '.join(RUN_KEYS)})")
            if not RUN_KEYS[key] and marker.get(key):
                raise MarkerError(f"run option {key!r} given twice")
            value = value.strip()
            if key == "replace" and " => " not in value:
                raise MarkerError(f"replace: wants 'OLD => NEW', not {value!r}")
            marker.options.append((key, value))
        return marker
    raise MarkerError(f"not a marker: {head!r}")


def blocks(path: Path) -> list[Block]:
    """Every fenced block of the Markdown file C{path}."""
    lines = path.read_text(encoding="utf-8").split("\n")
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, language = len(match.group(1)), match.group(2), match.group(3).lower()
        start = i
        content = []
        i += 1
        closing = re.compile(r"^ {0,3}" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}\s*$")
        while i < len(lines) and not closing.match(lines[i]):
            line = lines[i]
            strip = min(indent, len(line) - len(line.lstrip(" ")))
            content.append(line[strip:])
            i += 1
        i += 1
        marker, error = None, None
        comment = _comment_before(lines, start)
        if comment is not None:
            try:
                marker = parse_marker(comment)
            except MarkerError as e:
                error = str(e)
        block = Block(path, start + 1, language, "\n".join(content) + "\n", marker, error,
                      found[-1] if found else None)
        found.append(block)
    return found


def _comment_before(lines: list[str], fence: int) -> Optional[str]:
    """The HTML comment that ends on the line right before line C{fence}, if any."""
    end = fence - 1
    if end < 0 or not lines[end].rstrip().endswith("-->"):
        return None
    start = end
    while start >= 0 and "<!--" not in lines[start]:
        start -= 1
    if start < 0:
        return None
    text = "\n".join(line.strip() for line in lines[start:end + 1])
    return text[text.index("<!--") + 4: text.rindex("-->")]
