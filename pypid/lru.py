"""
Least-recently-used bookkeeping: L{LRU} for files under a size cap (the
cached upstream files; files being served are pinned and never chosen for
eviction; the caller deletes the files this names), and L{Recent}, a small
mapping of the most recently used entries. Pure.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Generic, Hashable, Optional, TypeVar, cast


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


_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class Recent(Generic[_K, _V]):
    """
    A mapping holding the most recently used entries: at most C{size} of
    them, and, when C{max_bytes} is given (the values are then C{bytes}),
    at most that many bytes of values (C{weigh(value)} bytes each, by
    default its length), each counted with L{ENTRY_OVERHEAD} for its key
    and bookkeeping. A value over
    C{max_bytes} by itself is not kept. C{on_evict(key)} is told about each
    entry that had to go.
    """

    #: Bytes an entry costs besides its value's (its key, the dict slot and
    #: list node, the bytes object's header), roughly.
    ENTRY_OVERHEAD = 400

    def __init__(
        self,
        size: Optional[int],
        on_evict: Optional[Callable[[_K], object]] = None,
        max_bytes: Optional[int] = None,
        weigh: Callable[[_V], int] = cast(Callable[[_V], int], len),
    ) -> None:
        self.size = size
        self.on_evict = on_evict
        self.max_bytes = max_bytes
        self.weigh = weigh
        #: Bytes held (when C{max_bytes} is given).
        self.total = 0
        self._items: OrderedDict[_K, _V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: _K, default: Optional[_V] = None) -> Optional[_V]:
        if key not in self._items:
            return default
        self._items.move_to_end(key)
        return self._items[key]

    def _weight(self, value: _V) -> int:
        return self.weigh(value) + self.ENTRY_OVERHEAD if self.max_bytes is not None else 0

    def __setitem__(self, key: _K, value: _V) -> None:
        if self.max_bytes is not None and self._weight(value) > self.max_bytes:
            self.pop(key)
            return
        self.pop(key)
        self._items[key] = value
        self.total += self._weight(value)
        while (self.size is not None and len(self._items) > self.size) or (
            self.max_bytes is not None and self.total > self.max_bytes
        ):
            old, gone = self._items.popitem(last=False)
            self.total -= self._weight(gone)
            if self.on_evict is not None:
                self.on_evict(old)

    def pop(self, key: _K, default: Optional[_V] = None) -> Optional[_V]:
        if key not in self._items:
            return default
        value = self._items.pop(key)
        self.total -= self._weight(value)
        return value
