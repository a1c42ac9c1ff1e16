"""
The system's C{crypt(3)} (libxcrypt on current Linux distributions),
called through ctypes.

It checks and makes bcrypt, SHA-crypt and MD5-crypt hashes without the
bcrypt package, on every Python (the C{crypt} module is deprecated and
gone from Python 3.13), and, unlike the C{crypt} module, without holding
the GIL: ctypes releases it for the length of the call, so a check in a
thread does not stall the reactor.

Each kind of hash is used only after a known answer has been reproduced,
so a libcrypt without bcrypt (old glibc, other systems) is simply not used
for it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import Optional

#: The size of libxcrypt's C{struct crypt_data} (C{crypt_rn} is told it).
_CRYPT_DATA_RN = 32768
#: Larger than any C{struct crypt_data} (glibc's old one is 131,232 bytes),
#: for a C{crypt_r} that is not told the size.
_CRYPT_DATA_R = 262144

#: A known answer per prefix: the password "pypid" and its hash, the same
#: from passlib's pure-Python code, the bcrypt package and libxcrypt.
KNOWN = {
    "$2b$": "$2b$04$abcdefghijklmnopqrstuuLI4iHuh6fJx9Bo4/Bb0DC8MhSmbVhmi",
    "$2y$": "$2y$04$abcdefghijklmnopqrstuuLI4iHuh6fJx9Bo4/Bb0DC8MhSmbVhmi",
    "$2a$": "$2a$04$abcdefghijklmnopqrstuuLI4iHuh6fJx9Bo4/Bb0DC8MhSmbVhmi",
    "$6$": "$6$rounds=1000$saltsalt$aAp6QBqqztGXtSWedexBqqsGX9yNAXs0PfY71mDpOMLun6/keY6u8aojKecBCxFkVHl5ycPPAQzwZNHv0v0bH1",
    "$5$": "$5$rounds=1000$saltsalt$F6SKyizoiAlKo7t9w2HdMpchGetWGaFXyXuoPlgmKsC",
    "$1$": "$1$saltsalt$MCMvQ0AIgthnirhDvEe3N.",
}
KNOWN_PASSWORD = b"pypid"

_NAMES = ("libcrypt.so.1", "libcrypt.so.2", "libcrypt.so")


class LibCrypt:
    """One loaded C{libcrypt}: C{crypt(phrase, setting)} and which prefixes it handles."""

    def __init__(self, lib: ctypes.CDLL, name: str) -> None:
        self.name = name
        fn = getattr(lib, "crypt_rn", None)
        if fn is not None:
            fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
            self._size = _CRYPT_DATA_RN
        else:
            fn = lib.crypt_r
            fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
            self._size = _CRYPT_DATA_R
        fn.restype = ctypes.c_char_p
        self._fn = fn
        self._rn = self._size == _CRYPT_DATA_RN
        self._lock = threading.Lock()
        self._supported: dict[str, bool] = {}

    def crypt(self, phrase: bytes, setting: bytes) -> Optional[bytes]:
        """The hash of C{phrase} with C{setting} (a hash or a salt), or None when refused."""
        if b"\0" in phrase or b"\0" in setting:
            return None
        data = ctypes.create_string_buffer(self._size)
        if self._rn:
            result = self._fn(phrase, setting, data, self._size)
        else:
            result = self._fn(phrase, setting, data)
        if not result or result.startswith(b"*"):
            return None
        return result

    def supports(self, prefix: str) -> bool:
        """Whether this libcrypt reproduces the known answer for hashes starting with C{prefix}."""
        with self._lock:
            known = self._supported.get(prefix)
        if known is None:
            expected = KNOWN.get(prefix)
            known = expected is not None and self.crypt(KNOWN_PASSWORD, expected.encode()) == expected.encode()
            with self._lock:
                self._supported[prefix] = known
        return known


_loaded: Optional[LibCrypt] = None
_tried = False
_load_lock = threading.Lock()


def load() -> Optional[LibCrypt]:
    """The system's libcrypt, loaded once, or None where there is none."""
    global _loaded, _tried
    with _load_lock:
        if not _tried:
            _tried = True
            _loaded = _open()
        return _loaded


def _open() -> Optional[LibCrypt]:
    names = list(_NAMES)
    found = ctypes.util.find_library("crypt")
    if found and found not in names:
        names.append(found)
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        if hasattr(lib, "crypt_rn") or hasattr(lib, "crypt_r"):
            return LibCrypt(lib, name)
    return None
