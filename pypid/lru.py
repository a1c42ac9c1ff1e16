"""
Least-recently-used bookkeeping: L{LRU} for files under a size cap (the
cached upstream files; files being served are pinned and never chosen for
eviction; the caller deletes the files this names), and L{Recent}, a small
mapping of the most recently used entries. Pure.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional


class LRU:
    def __init__(self, max_size: Optional[int]) -> None:
        self.max_size = max_size
        self.total = 0
        self._sizes: "OrderedDict[str, int]" = OrderedDict()
        self._pins: dict[str, int] = {}

    def __contains__(self, path: str) -> bool:
        return path in self._sizes

    def __len__(self) -> int:
        return len(self._sizes)

    def add(self, path: str, size: int) -> None:
        """Record C{path} (C{size} bytes) as the most recently used."""
        self.remove(path)
        self._sizes[path] = size
        self.total += size

    def touch(self, path: str) -> None:
        if path in self._sizes:
            self._sizes.move_to_end(path)

    def remove(self, path: str) -> None:
        size = self._sizes.pop(path, None)
        if size is not None:
            self.total -= size

    def pin(self, path: str) -> None:
        self._pins[path] = self._pins.get(path, 0) + 1

    def unpin(self, path: str) -> None:
        count = self._pins.get(path, 0) - 1
        if count > 0:
            self._pins[path] = count
        else:
            self._pins.pop(path, None)

    def victims(self) -> list[str]:
        """
        Forget and return the least recently used unpinned files until the
        total is within the cap (or only pinned files are left).
        """
        if self.max_size is None:
            return []
        out = []
        for path in list(self._sizes):
            if self.total <= self.max_size:
                break
            if path in self._pins:
                continue
            out.append(path)
            self.remove(path)
        return out


class Recent:
    """
    A mapping holding at most C{size} entries: the most recently used.
    C{on_evict(key)} is told about each entry that had to go.
    """

    def __init__(self, size: int, on_evict=None) -> None:
        self.size = size
        self.on_evict = on_evict
        self._items: "OrderedDict" = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key) -> bool:
        return key in self._items

    def get(self, key, default=None):
        if key not in self._items:
            return default
        self._items.move_to_end(key)
        return self._items[key]

    def __setitem__(self, key, value) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            old, _ = self._items.popitem(last=False)
            if self.on_evict is not None:
                self.on_evict(old)

    def pop(self, key, default=None):
        return self._items.pop(key, default)
