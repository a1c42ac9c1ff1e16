"""
The password hashes of an htpasswd file: which are accepted, how each is
checked, and how new ones are made (see docs/passwords.md).

bcrypt hashes are checked with the bcrypt package, called directly (never
through passlib's bcrypt handler, which fails with bcrypt 5), or, without
it, with the system's libcrypt; SHA-crypt and MD5-crypt with libcrypt, or
passlib's code where there is none; Apache's MD5 with passlib. Every one of
these lets other threads run while it works, except passlib's (short for
the hashes it is used for). All of it blocks: call it in a thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Any, Optional

from pypid.auth import libcrypt

#: What each accepted kind of entry is called in logs and docs.
BCRYPT = "bcrypt"
SHA512_CRYPT = "sha512-crypt"
SHA256_CRYPT = "sha256-crypt"
APR1 = "apr1-md5"
MD5_CRYPT = "md5-crypt"
SHA1 = "sha1"
PLAIN = "plain"

#: bcrypt uses at most this many bytes of a password (the rest is ignored).
BCRYPT_MAX = 72
#: bcrypt's cost for new hashes: about a quarter of a second per check.
ROUNDS = 12

_PREFIXES = (
    ("$2y$", BCRYPT), ("$2b$", BCRYPT), ("$2a$", BCRYPT),
    ("$6$", SHA512_CRYPT), ("$5$", SHA256_CRYPT),
    ("$apr1$", APR1), ("$1$", MD5_CRYPT), ("{SHA}", SHA1),
)
_DES = re.compile(r"^[./0-9A-Za-z]{13}$")
_BCRYPT_HASH = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCRYPT_B64 = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_TO_BCRYPT_B64 = bytes.maketrans(_B64, _BCRYPT_B64)


class NoBackend(Exception):
    """Nothing here can check or make this kind of hash."""


def identify(stored: str) -> tuple[Optional[str], str]:
    """
    The kind of an htpasswd entry's hash, or None and why it is refused.

    An entry that starts with neither C{$} nor C{{} and is not a DES-crypt
    hash (13 characters of the crypt alphabet) is a plain-text password.
    """
    for prefix, kind in _PREFIXES:
        if stored.startswith(prefix):
            return kind, ""
    if not stored:
        return None, "an empty password hash"
    if stored.startswith(("$2x$", "$2$")):
        return None, "an old bcrypt variant ($2x$/$2$); make a new hash"
    if stored.startswith(("$", "{")):
        return None, "a hash format pypid does not know"
    if _DES.match(stored):
        return None, "a DES-crypt hash (only 8 characters of a password count)"
    return PLAIN, ""


class Hashes:
    """
    Checks and makes hashes with the backends given (the defaults: the
    bcrypt package if installed, the system's libcrypt if any).
    """

    def __init__(self, bcrypt: Any = None, libcrypt: Optional[libcrypt.LibCrypt] = None) -> None:
        self.bcrypt = bcrypt
        self.libcrypt = libcrypt

    @classmethod
    def default(cls) -> "Hashes":
        try:
            import bcrypt
        except ImportError:
            bcrypt = None  # type: ignore[assignment]  # no bcrypt: None
        if not hasattr(bcrypt, "checkpw") or not hasattr(bcrypt, "hashpw"):
            bcrypt = None  # type: ignore[assignment]  # as above
        return cls(bcrypt, libcrypt.load())

    def backend(self, kind: str) -> Optional[str]:
        """What checks C{kind} here, or None when nothing can."""
        if kind == BCRYPT:
            if self.bcrypt is not None:
                return f"bcrypt {getattr(self.bcrypt, '__version__', '')}".strip()
            if self._libcrypt("$2b$"):
                return "libcrypt"
            return None
        if kind in (SHA512_CRYPT, SHA256_CRYPT, MD5_CRYPT):
            prefix = {SHA512_CRYPT: "$6$", SHA256_CRYPT: "$5$", MD5_CRYPT: "$1$"}[kind]
            return "libcrypt" if self._libcrypt(prefix) else "passlib"
        if kind == APR1:
            return "passlib"
        return "hashlib"

    def problem(self, stored: str) -> Optional[str]:
        """Why the entry C{stored} can never match here, or None when it can be checked."""
        kind, why = identify(stored)
        if kind is None:
            return why
        if kind == BCRYPT and not _BCRYPT_HASH.match(stored):
            return "a malformed bcrypt hash"
        if self.backend(kind) is None:
            return "a bcrypt hash, and neither the bcrypt package nor a libcrypt with bcrypt is installed"
        return None

    def verify(self, password: bytes, stored: str) -> bool:
        """
        Whether C{password} matches the entry C{stored}. Refused entries,
        and passwords with a NUL byte (C strings end there), never match.
        """
        if b"\0" in password:
            return False
        kind, _ = identify(stored)
        if kind == BCRYPT:
            return self._verify_bcrypt(password, stored)
        if kind in (SHA512_CRYPT, SHA256_CRYPT, MD5_CRYPT):
            prefix = stored[: stored.index("$", 1) + 1]
            lib = self._libcrypt(prefix)
            if lib is not None:
                return _same(lib.crypt(password, stored.encode("ascii", "replace")), stored)
            from passlib import hash as passlib_hash

            handler = {SHA512_CRYPT: passlib_hash.sha512_crypt, SHA256_CRYPT: passlib_hash.sha256_crypt,
                       MD5_CRYPT: passlib_hash.md5_crypt}[kind]
            return _passlib_verify(handler, password, stored)
        if kind == APR1:
            from passlib.hash import apr_md5_crypt

            return _passlib_verify(apr_md5_crypt, password, stored)
        if kind == SHA1:
            digest = base64.b64encode(hashlib.sha1(password).digest()).decode("ascii")
            return hmac.compare_digest("{SHA}" + digest, stored)
        if kind == PLAIN:
            return hmac.compare_digest(password, stored.encode("utf-8"))
        return False

    def _verify_bcrypt(self, password: bytes, stored: str) -> bool:
        if not _BCRYPT_HASH.match(stored):
            return False
        # bcrypt uses the first 72 bytes (Apache's htpasswd and bcrypt < 5
        # cut longer passwords silently; bcrypt 5 refuses them).
        secret = password[:BCRYPT_MAX]
        if self.bcrypt is not None:
            try:
                return bool(self.bcrypt.checkpw(secret, stored.encode("ascii")))
            except ValueError:
                return False
        lib = self._libcrypt("$2b$")
        if lib is not None:
            return _same(lib.crypt(secret, stored.encode("ascii")), stored)
        raise NoBackend("bcrypt hashes need the bcrypt package or the system's libcrypt")

    def hash_bcrypt(self, password: bytes, rounds: int = ROUNDS) -> str:
        """A new C{$2y$} bcrypt hash of C{password} (what Apache's C{htpasswd -B} writes)."""
        if not 4 <= rounds <= 31:
            raise ValueError("bcrypt's cost is between 4 and 31")
        if not password or b"\0" in password or len(password) > BCRYPT_MAX:
            raise ValueError("a bcrypt password has 1 to 72 bytes and no NUL byte")
        if self.bcrypt is not None:
            made = self.bcrypt.hashpw(password, self.bcrypt.gensalt(rounds)).decode("ascii")
        elif (lib := self._libcrypt("$2b$")) is not None:
            salt = base64.b64encode(secrets.token_bytes(16))[:22].translate(_TO_BCRYPT_B64)
            result = lib.crypt(password, b"$2b$%02d$" % rounds + salt)
            if result is None:
                raise NoBackend("libcrypt refused to make a bcrypt hash")
            made = result.decode("ascii")
        else:
            raise NoBackend(
                "cannot make bcrypt hashes: install the bcrypt package (pip install bcrypt, "
                "or Debian's python3-bcrypt)"
            )
        # $2b$ and $2y$ are the same algorithm; $2y$ is what Apache writes.
        return "$2y$" + made[4:]

    def _libcrypt(self, prefix: str) -> Optional[libcrypt.LibCrypt]:
        """The system's libcrypt when it makes C{prefix} hashes, else L{None}."""
        lib = self.libcrypt
        return lib if lib is not None and lib.supports(prefix) else None


def _same(result: Optional[bytes], stored: str) -> bool:
    return result is not None and hmac.compare_digest(result, stored.encode("ascii", "replace"))


def _passlib_verify(handler, password: bytes, stored: str) -> bool:
    try:
        return bool(handler.verify(password, stored))
    except (ValueError, TypeError):
        return False


_default: Optional[Hashes] = None


def default() -> Hashes:
    """The process's L{Hashes}, made on first use."""
    global _default
    if _default is None:
        _default = Hashes.default()
    return _default
