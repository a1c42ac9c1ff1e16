"""
Password hashes with each backend: the bcrypt package (whatever version is
installed: 5 in the newest run, Debian's 3.2.2 in the bookworm run), the
system's libcrypt, and neither.
"""

from __future__ import annotations

import pytest
from passlib.hash import apr_md5_crypt, ldap_sha1, md5_crypt, sha256_crypt, sha512_crypt

from pypid.auth import hashes, libcrypt
from pypid.auth.hashes import Hashes, NoBackend, identify

try:
    import bcrypt as bcrypt_module
except ImportError:  # pragma: no cover - the bcrypt package is a dependency
    bcrypt_module = None

LIBCRYPT = libcrypt.load()
BACKENDS = {
    "bcrypt-package": Hashes(bcrypt_module, None),
    "libcrypt": Hashes(None, LIBCRYPT),
    "passlib-only": Hashes(None, None),
}


def test_the_backends_are_here():
    """The suite runs where both are present: a missing one would hide a backend's bugs."""
    assert bcrypt_module is not None
    assert LIBCRYPT is not None and LIBCRYPT.supports("$2b$") and LIBCRYPT.supports("$6$")


def test_identify():
    assert identify("$2y$12$" + "a" * 53) == ("bcrypt", "")
    assert identify("$6$salt$x")[0] == "sha512-crypt"
    assert identify("$5$salt$x")[0] == "sha256-crypt"
    assert identify("$apr1$salt$x")[0] == "apr1-md5"
    assert identify("$1$salt$x")[0] == "md5-crypt"
    assert identify("{SHA}x=")[0] == "sha1"
    assert identify("secret")[0] == "plain"
    assert identify("correct horse")[0] == "plain"
    for refused in ("abJnggxhB/yWI", "", "$2x$10$abc", "$argon2id$v=19$x", "{SSHA}x"):
        kind, why = identify(refused)
        assert kind is None and why, refused


@pytest.mark.parametrize("maker", ["bcrypt-package", "libcrypt"])
@pytest.mark.parametrize("checker", ["bcrypt-package", "libcrypt"])
def test_bcrypt_across_backends(maker, checker):
    made = BACKENDS[maker].hash_bcrypt(b"s3cret", rounds=4)
    assert made.startswith("$2y$04$") and len(made) == 60
    for ident in ("$2y$", "$2b$", "$2a$"):
        stored = ident + made[4:]
        assert BACKENDS[checker].verify(b"s3cret", stored)
        assert not BACKENDS[checker].verify(b"s3cret!", stored)
        assert not BACKENDS[checker].verify(b"", stored)


@pytest.mark.parametrize("backend", ["bcrypt-package", "libcrypt"])
def test_bcrypt_uses_72_bytes(backend):
    """Apache and bcrypt < 5 ignore what follows byte 72; bcrypt 5 would raise: pypid cuts."""
    hashes_ = BACKENDS[backend]
    stored = hashes_.hash_bcrypt(b"x" * 72, rounds=4)
    assert hashes_.verify(b"x" * 72, stored)
    assert hashes_.verify(b"x" * 100, stored)
    assert not hashes_.verify(b"x" * 71, stored)
    with pytest.raises(ValueError):
        hashes_.hash_bcrypt(b"x" * 73, rounds=4)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_nul_bytes_never_match(backend):
    """C strings end at a NUL: 'a\\0anything' must not pass for 'a'."""
    hashes_ = BACKENDS[backend]
    for stored in (sha512_crypt.using(rounds=1000).hash("a"), "a", ldap_sha1.hash("a")):
        assert hashes_.verify(b"a", stored)
        assert not hashes_.verify(b"a\0b", stored)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_other_schemes(backend):
    hashes_ = BACKENDS[backend]
    for stored in (sha512_crypt.using(rounds=1000).hash("pw"), sha512_crypt.hash("pw"),
                   sha256_crypt.using(rounds=1000).hash("pw"), apr_md5_crypt.hash("pw"),
                   md5_crypt.hash("pw"), ldap_sha1.hash("pw"), "pw"):
        assert hashes_.verify(b"pw", stored), stored
        assert not hashes_.verify(b"pW", stored), stored
        assert hashes_.problem(stored) is None


def test_without_any_bcrypt_backend():
    """Neither the package nor libcrypt: bcrypt entries are refused with the reason, nothing crashes."""
    none = BACKENDS["passlib-only"]
    stored = BACKENDS["bcrypt-package"].hash_bcrypt(b"pw", rounds=4)
    assert "bcrypt package" in none.problem(stored)
    with pytest.raises(NoBackend):
        none.verify(b"pw", stored)
    with pytest.raises(NoBackend, match="install the bcrypt package"):
        none.hash_bcrypt(b"pw", rounds=4)
    assert none.backend("bcrypt") is None


def test_malformed_bcrypt_entries():
    good = hashes.default().hash_bcrypt(b"pw", rounds=4)
    for bad in (good[:-1], good + "x", good[:4] + "99" + good[6:], good[:10] + "!" + good[11:]):
        assert hashes.default().problem(bad)
        assert not hashes.default().verify(b"pw", bad)


def test_libcrypt_known_answers():
    for prefix, known in libcrypt.KNOWN.items():
        assert LIBCRYPT.crypt(libcrypt.KNOWN_PASSWORD, known.encode()) == known.encode()
    assert LIBCRYPT.crypt(b"pw", b"$apr1$saltsalt$") is None
    assert not LIBCRYPT.supports("$apr1$")
