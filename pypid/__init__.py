"""pypid: a private Python package index served by Twisted."""

__version__ = "0.1.0"
