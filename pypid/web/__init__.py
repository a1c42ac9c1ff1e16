"""The HTTP side of pypid: twisted.web resources over the index."""
