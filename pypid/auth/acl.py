"""
Per-project upload rights: which users may upload to (and remove from)
which projects.

The ACL file, one statement a line, C{#} starts a comment::

    # groups: @NAME = USER ...
    @team-a = alice bob
    @team-b = carol

    # rules: PROJECT-GLOB ... = USER-OR-@GROUP ...   (globs on normalised names)
    team-a-* = @team-a
    team-b-* legacy-tool = @team-b
    shared-* = @team-a @team-b
    * = admin                      # '*' on the right means any logged-in user

    # projects no rule names: nobody (default), anyone, or first-uploader
    unlisted-projects = first-uploader
    # where first uploaders are recorded (relative to this file's directory;
    # default: .pypid-owners in the first package directory)
    owners-file = /var/lib/pypid/owners

A user may upload to a project when any rule whose glob matches the
project's normalised name lists the user (or one of the user's groups).
When no rule matches, C{unlisted-projects} decides; with
C{first-uploader}, the first user to upload a project the index does not
have yet becomes its owner, recorded as a C{project = user} line in the
owners file (which an administrator may edit like the ACL).

With replicas (C{--store}), first uploaders are recorded in the catalog
that every replica shares, so that each gives the same answer and two
replicas taking a project's first upload at once agree on one owner; the
owners file, deployed to every node with the ACL, still names owners an
administrator set, and wins.

Parsing is pure; L{AclFile} reads the files (blocking: call it in a thread)
and re-reads them when they change.
"""

from __future__ import annotations

import fnmatch
import os
import re
import threading
from typing import NamedTuple, Optional

from pypid.atomic import replacing
from pypid.index.names import normalize
from pypid.store.interfaces import StoreUnavailable

UNLISTED = ("nobody", "anyone", "first-uploader")
_WORD = re.compile(r"^[^\s=#]+$")


class AclError(ValueError):
    """The ACL file is malformed."""


class Rule(NamedTuple):
    patterns: tuple[str, ...]
    who: frozenset[str]


class Acl(NamedTuple):
    groups: dict[str, frozenset[str]]
    rules: tuple[Rule, ...]
    unlisted: str = "nobody"
    owners_file: Optional[str] = None

    def matching(self, project: str) -> Optional[frozenset[str]]:
        """The users (and C{*}) rules give C{project}, or None when no rule matches."""
        found: Optional[set[str]] = None
        for rule in self.rules:
            if any(fnmatch.fnmatchcase(project, p) for p in rule.patterns):
                found = found or set()
                for who in rule.who:
                    if who.startswith("@"):
                        found.update(self.groups.get(who, ()))
                    else:
                        found.add(who)
        return None if found is None else frozenset(found)


def _pattern(text: str) -> str:
    # Normalise like a project name, leaving glob characters alone.
    return re.sub(r"[-_.]+", "-", text).lower()


def parse_acl(text: str, where: str = "ACL") -> Acl:
    """Parse an ACL file's text; raises L{AclError} naming the line."""
    groups: dict[str, frozenset[str]] = {}
    rules: list[Rule] = []
    unlisted = "nobody"
    owners_file = None
    used_groups: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        left, sep, right = line.partition("=")
        left_words, right_words = left.split(), right.split()
        if not sep or not left_words or not all(_WORD.match(w) for w in left_words + right_words):
            raise AclError(f"{where} line {number}: expected 'NAMES = VALUES', got {raw.strip()!r}")
        if left_words == ["unlisted-projects"]:
            if right_words not in ([u] for u in UNLISTED):
                raise AclError(f"{where} line {number}: unlisted-projects is one of {', '.join(UNLISTED)}")
            unlisted = right_words[0]
        elif left_words == ["owners-file"]:
            if len(right_words) != 1:
                raise AclError(f"{where} line {number}: owners-file takes one path")
            owners_file = right_words[0]
        elif left_words[0].startswith("@"):
            if len(left_words) != 1 or len(left_words[0]) < 2:
                raise AclError(f"{where} line {number}: a group line is '@NAME = USER ...'")
            if any(w.startswith("@") for w in right_words):
                raise AclError(f"{where} line {number}: groups cannot contain groups")
            groups[left_words[0]] = frozenset(right_words)
        else:
            if not right_words:
                raise AclError(f"{where} line {number}: a rule needs at least one user or @group")
            for w in right_words:
                if w.startswith("@"):
                    used_groups.append((number, w))
            rules.append(Rule(tuple(_pattern(p) for p in left_words), frozenset(right_words)))
    for number, group in used_groups:
        if group not in groups:
            raise AclError(f"{where} line {number}: unknown group {group}")
    return Acl(groups, tuple(rules), unlisted, owners_file)


def parse_owners(text: str, where: str = "owners file") -> dict[str, str]:
    """C{project = user} lines: project -> owner."""
    owners: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        left, sep, right = line.partition("=")
        if not sep or len(left.split()) != 1 or len(right.split()) != 1:
            raise AclError(f"{where} line {number}: expected 'PROJECT = USER'")
        owners[normalize(left.strip())] = right.strip()
    return owners


class Decision(NamedTuple):
    allowed: bool
    reason: str
    #: Whether the user was just recorded as the project's owner.
    claimed: bool = False


def _signature(path: str):
    try:
        st = os.stat(path)
    except OSError as e:
        return ("missing", e.errno)
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class AclFile:
    """
    The ACL at C{path}, re-read whenever it changes. A file that has become
    unreadable or malformed refuses every upload (fail closed) until fixed.
    Blocking: call L{authorize} in a thread.
    """

    def __init__(self, path: str, default_owners: str, shared_owners=None) -> None:
        self.path = os.path.abspath(path)
        self.default_owners = default_owners
        #: Where first uploaders are recorded when replicas share them (an
        #: object with blocking C{owner(project)} and C{claim(project,
        #: user)}, the latter returning the owner), or L{None}: the file.
        self.shared_owners = shared_owners
        self._lock = threading.Lock()
        self._signature = None
        self._acl: Optional[Acl] = None
        self._error: Optional[str] = None
        self.load()
        if self._error is not None:
            raise AclError(self._error)

    def load(self) -> Optional[str]:
        """Re-read the ACL if it changed; the current error, if any."""
        signature = _signature(self.path)
        if signature == self._signature:
            return self._error
        try:
            with open(self.path, encoding="utf-8") as f:
                self._acl, self._error = parse_acl(f.read(), self.path), None
        except (OSError, UnicodeDecodeError, AclError) as e:
            self._acl, self._error = None, f"cannot use ACL {self.path}: {e}"
        self._signature = signature
        return self._error

    @property
    def owners_path(self) -> str:
        acl = self._acl
        if acl is None or acl.owners_file is None:
            return self.default_owners
        return os.path.join(os.path.dirname(self.path), acl.owners_file)

    def _owners(self) -> dict[str, str]:
        try:
            with open(self.owners_path, encoding="utf-8") as f:
                return parse_owners(f.read(), self.owners_path)
        except FileNotFoundError:
            return {}

    def authorize(self, user: str, project: str, exists: bool) -> Decision:
        """
        May C{user} upload to (or remove from) C{project}? C{exists} says
        whether the index has files of it; with C{first-uploader}, a user
        uploading a new unlisted project is recorded as its owner.

        @raise StoreUnavailable: the shared owners cannot be read now.
        """
        with self._lock:
            error = self.load()
            acl = self._acl
            if error is not None or acl is None:
                return Decision(False, error or "no ACL")
            allowed = acl.matching(project)
            if allowed is not None:
                if user in allowed or "*" in allowed:
                    return Decision(True, "listed in the ACL")
                return Decision(False, f"the ACL does not let {user} upload to {project}")
            if acl.unlisted == "anyone":
                return Decision(True, "unlisted projects are open to every user")
            if acl.unlisted == "nobody":
                return Decision(False, f"no ACL rule names {project}")
            try:
                owners = self._owners()
            except (OSError, UnicodeDecodeError, AclError) as e:
                return Decision(False, f"cannot read the owners file: {e}")
            owner = owners.get(project)
            shared = self.shared_owners
            if owner is None and shared is not None:
                try:
                    owner = shared.owner(project)
                except StoreUnavailable:
                    raise
                except Exception as e:
                    return Decision(False, f"cannot read the owners: {e}")
            if owner is not None:
                if owner == user:
                    return Decision(True, "owner")
                return Decision(False, f"{project} belongs to {owner}")
            if exists:
                return Decision(False, f"{project} exists and has no owner in the ACL")
            if shared is not None:
                try:
                    owner = shared.claim(project, user)
                except StoreUnavailable:
                    raise
                except Exception as e:
                    return Decision(False, f"cannot record the owner: {e}")
                if owner != user:
                    return Decision(False, f"{project} belongs to {owner}")
                return Decision(True, "first uploader, now the owner", claimed=True)
            try:
                self._record(project, user)
            except OSError as e:
                return Decision(False, f"cannot record the owner: {e}")
            return Decision(True, "first uploader, now the owner", claimed=True)

    def _record(self, project: str, user: str) -> None:
        """Append C{project = user} to the owners file, atomically."""
        path = self.owners_path
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            text = "# Project owners recorded by pypid (first uploaders): PROJECT = USER\n"
        if text and not text.endswith("\n"):
            text += "\n"
        text += f"{project} = {user}\n"
        with replacing(path, prefix=".pypid-owners-", suffix=".tmp", mode=0o640, text=True) as f:
            f.write(text)
