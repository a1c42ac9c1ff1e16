"""
C{pypid passwd [-c] [-D] [--password-stdin] FILE USER}: manage the htpasswd
file given to C{-P/--passwords}, without apache2-utils. New passwords are
bcrypt hashes; the file is replaced atomically and left readable by its
owner and group only (0640).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Optional, TextIO

from pypid.atomic import replacing
from pypid.auth import hashes
from pypid.auth.htpasswd import HtpasswdFile

USAGE = "pypid passwd [-c] [-D] [--password-stdin] FILE USER"
#: bcrypt's cost; about a quarter of a second per check on a current CPU.
ROUNDS = hashes.ROUNDS


class PasswdError(Exception):
    pass


def check_user(user: str) -> None:
    if not user or len(user) > 255 or ":" in user or any(c.isspace() or ord(c) < 32 for c in user):
        raise PasswdError(f"invalid user name {user!r}: no ':', spaces or control characters")


def hash_password(password: str, rounds: Optional[int] = None) -> str:
    """A C{$2y$} bcrypt hash (with the bcrypt package, or else the system's libcrypt)."""
    if not password:
        raise PasswdError("empty passwords are not accepted")
    secret = password.encode("utf-8")
    if len(secret) > hashes.BCRYPT_MAX:
        raise PasswdError("bcrypt uses at most 72 bytes of a password; choose a shorter one")
    if "\0" in password:
        raise PasswdError("a password cannot contain a NUL character")
    try:
        return hashes.default().hash_bcrypt(secret, rounds or ROUNDS)
    except hashes.NoBackend as e:
        raise PasswdError(str(e))


def update(path: str, user: str, password: Optional[str], create: bool = False,
           delete: bool = False, rounds: Optional[int] = None) -> str:
    """
    Add or update C{user} (or delete it with C{delete}) in the file at
    C{path}; C{create} starts a new, empty file. Returns what was done.
    """
    check_user(user)
    if create and delete:
        raise PasswdError("-c and -D cannot be used together")
    if create:
        users = HtpasswdFile()
    else:
        if not os.path.exists(path):
            raise PasswdError(f"{path} does not exist (use -c to create it)")
        try:
            users = HtpasswdFile.read(path)
        except (ValueError, UnicodeDecodeError) as e:
            raise PasswdError(f"{path} is not an htpasswd file: {e}")
    if delete:
        if not users.delete(user):
            raise PasswdError(f"user {user} is not in {path}")
        done = "deleted"
    else:
        assert password is not None
        done = "updated" if user in users.users() else "added"
        users.set_hash(user, hash_password(password, rounds))
    write_atomically(path, users.to_string())
    return done


def write_atomically(path: str, data: bytes) -> None:
    """Replace C{path} with C{data}: mode 0640, the old file's owner kept if possible."""
    with replacing(path, prefix=".pypid-passwd-", suffix=".tmp", mode=0o640, keep_owner=True) as f:
        f.write(data)


def read_password(from_stdin: bool, stdin: TextIO, prompt=getpass.getpass) -> str:
    if from_stdin:
        line = stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    first = prompt("New password: ")
    second = prompt("Re-type new password: ")
    if first != second:
        raise PasswdError("the passwords do not match")
    return first


def main(argv: list[str], stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout,
         stderr: TextIO = sys.stderr, prompt=getpass.getpass) -> int:
    parser = argparse.ArgumentParser(prog="pypid passwd", usage=USAGE, description=(
        "Manage the htpasswd file given to -P/--passwords, without apache2-utils. New passwords are bcrypt "
        "hashes; the file is replaced atomically and left readable by its owner and group only (0640)."))
    parser.add_argument("-c", dest="create", action="store_true", help="create a new file (replacing any)")
    parser.add_argument("-D", dest="delete", action="store_true", help="delete the user")
    parser.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    parser.add_argument("file")
    parser.add_argument("user")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        check_user(args.user)
        password = None if args.delete else read_password(args.password_stdin, stdin, prompt)
        done = update(args.file, args.user, password, args.create, args.delete)
    except (PasswdError, OSError) as e:
        print(f"pypid passwd: {e}", file=stderr)
        return 1
    print(f"{done} user {args.user} in {args.file}", file=stdout)
    return 0
