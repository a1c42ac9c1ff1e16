"""
Option values the option mixins share: sizes, seconds, endpoint strings,
and help texts made readable.
"""

from __future__ import annotations

import re
from typing import Optional

from twisted.python import usage

_SIZE = re.compile(r"^(\d+)\s*([kmgt]?)(i?b)?$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """
    C{500M}, C{2G}, C{1024}: bytes (K/M/G/T are powers of 1024).

    @raise ValueError: for anything else.
    """
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(text)
    return int(match.group(1)) * 1024 ** "bkmgt".index((match.group(2) or "b").lower())


def whole_seconds(option: str, value: Optional[str]) -> Optional[int]:
    """A whole number of seconds (0 or more) given to C{--option}, or L{None}."""
    if value is None:
        return None
    try:
        number = int(value)
        if number < 0:
            raise ValueError
    except ValueError:
        raise usage.UsageError(f"--{option} must be a whole number of seconds, not {value!r}.")
    return number


def endpoint_description(value: str) -> str:
    """Turn a bare port number into C{tcp:N}; keep endpoint strings."""
    value = value.strip()
    return f"tcp:{value}" if value.isdigit() else value


def plain_help(docs: dict[str, str]) -> dict[str, str]:
    """
    Option help texts on one line each: an C{opt_} method's docstring keeps
    its indentation, which C{--help} would print as runs of spaces.
    """
    return {name: " ".join((text or "").split()) for name, text in docs.items()}
