"""
Project names: PEP 503 normalisation and validation.

Pure functions, no I/O.
"""

from __future__ import annotations

import re

_RUNS = re.compile(r"[-_.]+")
_VALID = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])\Z", re.IGNORECASE)


def normalize(name: str) -> str:
    """
    Return the PEP 503 normalised form of C{name}: lowercase, with every run
    of C{-}, C{_} and C{.} replaced by a single C{-}.
    """
    return _RUNS.sub("-", name).lower()


def is_valid(name: str) -> bool:
    """
    Whether C{name} is a valid project name: ASCII letters, digits, C{.},
    C{_} and C{-}, starting and ending with a letter or digit.
    """
    return _VALID.match(name) is not None


def is_normalized(name: str) -> bool:
    """Whether C{name} is already valid and in its normalised form."""
    return is_valid(name) and normalize(name) == name
