"""
Who may do what, on the command line: C{-P/--passwords},
C{-a/--authenticate} (pypiserver's names and rules) and C{--acl}.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional

from twisted.python import usage

#: What -a/--authenticate may list (pypiserver's names).
AUTH_ACTIONS = ("update", "download", "list")
#: Where first uploaders are recorded by default, in the first package directory.
OWNERS_FILE = ".pypid-owners"


@dataclass(frozen=True)
class AuthConfig:
    """The checked C{-P}, C{-a} and C{--acl}."""

    #: What needs a password: some of L{AUTH_ACTIONS}.
    actions: frozenset[str] = frozenset({"update"})
    #: The htpasswd file, absolute; L{None} for none (no C{-P}, or C{-P .}).
    passwords: Optional[str] = None
    #: The ACL file, absolute, if any (C{--acl}).
    acl: Optional[str] = None
    #: Where the ACL records first uploaders unless it says otherwise.
    owners: Optional[str] = None
    #: The API tokens file (C{--tokens}), absolute, if any.
    tokens: Optional[str] = None

    @property
    def uploads(self) -> bool:
        """
        Uploads are open when 'update' needs no password, and need one from
        the password file otherwise; C{-a update} without C{-P}: read-only.
        """
        return "update" not in self.actions or self.passwords is not None


class AuthOptions(usage.Options):
    """Mixed into L{pypid.tap.Options}; L{check_auth} in postOptions."""

    optParameters = [
        ["passwords", "P", None,
         "htpasswd file of the users who may log in ('.': none, only with -a .)."],
        ["authenticate", "a", None,
         "Comma-separated actions that need a password: update (upload and remove), "
         "download, list ('.': none). Default: update; without -P the index is then read-only."],
        ["acl", None, None,
         "File saying which users may upload to which projects (needs -P and -a update)."],
        ["tokens", None, None,
         "File of API tokens (written by 'pypid token'), accepted as the password of the user "
         "__token__, each acting for a user of -P within its scope. Needs -P."],
    ]

    def check_auth(self, upload_root: str) -> AuthConfig:
        """
        pypiserver's rules: C{-a .} (nothing needs a password) goes with
        C{-P .} (no password file) and only with it; C{-a update} without
        C{-P} is a read-only index. Reads protected without a password file
        could never be served, so that is refused.
        """
        raw = self["authenticate"]
        if raw is None:
            actions = {"update"}
        elif raw.strip() == ".":
            actions = set()
        else:
            actions = {a.strip().lower() for a in re.split(r"[,\s]+", raw) if a.strip()}
            unknown = actions - set(AUTH_ACTIONS)
            if unknown or not actions:
                raise usage.UsageError(
                    f"-a/--authenticate {raw!r}: list some of {', '.join(AUTH_ACTIONS)} "
                    "separated by commas, or '.' for none."
                )
        given = self["passwords"].strip() if self["passwords"] is not None else None
        if not actions and given != ".":
            raise usage.UsageError(
                "When nothing needs a password (-a .), the password file must be '.' too (-P .), "
                "as with pypiserver: anyone may then upload."
            )
        if actions and given == ".":
            raise usage.UsageError(
                "-P . (no password file) goes only with -a . (nothing needs a password)."
            )
        if given is None and actions - {"update"}:
            raise usage.UsageError(
                f"-a {','.join(sorted(actions))} protects reads, which needs -P/--passwords FILE."
            )
        passwords = None
        if given not in (None, "."):
            passwords = os.path.abspath(os.path.expanduser(given))
            try:
                with open(passwords, "rb"):
                    pass
            except OSError as e:
                raise usage.UsageError(f"cannot read the password file {given!r}: {e.strerror}")
        acl = owners = None
        if self["acl"] is not None:
            if passwords is None or "update" not in actions:
                raise usage.UsageError("--acl needs users: give -P/--passwords FILE with -a update.")
            acl = os.path.abspath(self["acl"])
            owners = os.path.join(upload_root, OWNERS_FILE)
            acl_file(acl, owners)
        tokens = None
        if self["tokens"] is not None:
            if passwords is None:
                raise usage.UsageError("--tokens needs -P/--passwords FILE: every token acts for one of its users.")
            tokens = check_tokens_file(self["tokens"])
        return AuthConfig(actions=frozenset(actions), passwords=passwords, acl=acl, owners=owners, tokens=tokens)


def check_tokens_file(given: str) -> str:
    """
    The absolute path of the tokens file C{given}: it may not exist yet (no
    tokens), but its directory must, and a file there must be readable.
    """
    from pypid.auth.tokens import TokenFile, TokenFileError

    path = os.path.abspath(os.path.expanduser(given))
    if not os.path.isdir(os.path.dirname(path)):
        raise usage.UsageError(f"--tokens {given!r}: the directory {os.path.dirname(path)!r} does not exist.")
    try:
        TokenFile.read(path)
    except (OSError, TokenFileError) as e:
        raise usage.UsageError(f"cannot read the tokens file {given!r}: {getattr(e, 'strerror', None) or e}")
    return path


def acl_file(path: str, owners: str):
    """
    The L{pypid.auth.acl.AclFile} at C{path}, read now.

    @raise usage.UsageError: when it is unreadable or malformed.
    """
    from pypid.auth.acl import AclError, AclFile

    try:
        return AclFile(path, owners)
    except AclError as e:
        raise usage.UsageError(str(e))
