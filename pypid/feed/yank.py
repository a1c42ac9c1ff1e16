"""
Yanking and unyanking (PEP 592): the rules, whichever way the request came
(the HTTP API and the project page's form, L{pypid.web.yankapi}; the
C{pypid yank} command speaks that API).

A yank names a local project and either one release (all its files) or
some of its files, with an optional reason; an unyank names the same. The
user must be allowed to upload to the project (the same rights: C{-P},
C{--acl}, a token's scope); the store keeps the yank
(L{pypid.store.interfaces.IPackageStore.setYanked}) and the pages show it
at once. Bad input is a clear 4xx and changes nothing. Every yank and
unyank, done or refused, is one audit line with the user and the reason
(a request refused from its head alone, without credentials or with a
body too large, is left to the access log, as it has no user yet);
so is every change of yanks the store reports that did not come through
here (an edit of the directory store's yank file, another replica).
"""

from __future__ import annotations

from typing import Any, Callable, Generator, Mapping, NamedTuple, Optional

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http

from pypid.feed.audit import AuditEvent, AuditLog
from pypid.feed.checks import UploadError, bad
from pypid.feed.publish import INTERNAL, unavailable
from pypid.index.filenames import parse_filename
from pypid.index.model import IndexSnapshot
from pypid.index.names import is_valid, normalize
from pypid.index.pypijson import release_files
from pypid.index.yanks import BadReason, check_reason
from pypid.store.interfaces import IPackageStore, StoreUnavailable

#: The two actions, as the audit log names them.
YANK = "yank"
UNYANK = "unyank"
#: Most files one request may name.
MAX_FILES = 1000


class YankRequest(NamedTuple):
    """What a yank or unyank asks for, checked for form (not against the index)."""

    action: str
    #: The project as given (a valid name).
    name: str
    #: The release, or L{None} when files are named.
    version: Optional[str]
    #: The file names, or C{()} when a release is named.
    filenames: tuple[str, ...]
    #: The reason (C{""} for none); L{None} for an unyank.
    reason: Optional[str]

    @property
    def project(self) -> str:
        return normalize(self.name)


def _one(fields: Mapping[str, list[str]], *names: str) -> Optional[str]:
    values = [v for name in names for v in fields.get(name, [])]
    if len(values) > 1:
        raise bad(f"Field '{names[0]}' was sent more than once.")
    return values[0].strip() if values and values[0].strip() else None


def yank_request(action: str, fields: Mapping[str, list[str]]) -> YankRequest:
    """
    Read a yank or unyank from form fields: C{project} (or C{name}), then
    C{version} or one or more C{file} (or C{filename}), and for a yank an
    optional C{reason}.

    @raise UploadError: 400, saying what is wrong.
    """
    name = _one(fields, "project", "name")
    if name is None:
        raise bad("Missing the 'project' field: the project whose release or files to " + action + ".")
    if not is_valid(name):
        shown = name.encode("unicode_escape").decode("ascii")[:100]
        raise bad(f"'{shown}' is not a valid project name.")
    version = _one(fields, "version")
    filenames = tuple(f.strip() for key in ("file", "filename") for f in fields.get(key, []) if f.strip())
    if (version is None) == (not filenames):
        raise bad(f"Name either a 'version' (the whole release) or one or more 'file' fields, to {action}.")
    if len(filenames) > MAX_FILES:
        raise bad(f"At most {MAX_FILES} files at once.")
    if version is not None and (len(version) > 200 or not version.isprintable()):
        raise bad("The 'version' field is not a version.")
    raw_reason = _one(fields, "reason")
    reason: Optional[str] = None
    if action == YANK:
        try:
            reason = check_reason(raw_reason or "")
        except BadReason as e:
            raise bad(f"Bad 'reason': {e}.")
    elif raw_reason is not None:
        raise bad("An unyank takes no 'reason'.")
    return YankRequest(action, name, version, filenames, reason)


class Yanked(NamedTuple):
    """A yank or unyank done."""

    #: The file names whose state changed (none: they already were so).
    changed: list[str]
    message: str


class Yanker:
    """
    The rules of yanks, over a store. C{authorize(user, project, action)}
    (the publisher's) says who may; C{audit} records every request.
    """

    log = Logger()

    def __init__(self, store: IPackageStore, authorize: Callable[[str, str, str], Deferred[None]], audit: AuditLog) -> None:
        self.store = store
        self.authorize = authorize
        self.audit = audit
        #: Yanks asked for here and not yet seen in a snapshot:
        #: (project key, file name) -> reason (None: unyank).
        self._expected: dict[tuple[str, str], Optional[str]] = {}
        self._seen: IndexSnapshot = store.snapshot
        store.subscribe(self._changed)

    def request(self, event: AuditEvent, wanted: YankRequest) -> Deferred[Yanked]:
        """
        Do C{wanted} for C{event.user}: a L{Deferred} of L{Yanked}, or
        failing with L{UploadError} (4xx); either way one audit line.
        """
        event.action = wanted.action
        event.project = wanted.project
        event.version = wanted.version or "-"
        event.file = ",".join(wanted.filenames) or "-"
        d = self._request(event, wanted)

        def done(result: Yanked) -> Yanked:
            event.result, event.status, event.message = "ok", http.OK, result.message
            self.audit.record(event)
            return result

        def failed(failure: Failure) -> Failure:
            event.result = "refused"
            if failure.check(UploadError):
                event.status, event.message = failure.value.code, failure.value.message
            else:
                self.log.failure("{action} of {project} failed", failure, action=wanted.action,
                                 project=wanted.project)
                event.status, event.message = http.INTERNAL_SERVER_ERROR, INTERNAL
            self.audit.record(event)
            return failure

        return d.addCallbacks(done, failed)

    @inlineCallbacks
    def _request(self, event: AuditEvent, wanted: YankRequest) -> Generator[Deferred[Any], Any, Yanked]:
        key = wanted.project
        yield self.store.whenReady()
        if self.store.snapshot.get(key) is None:
            raise UploadError(http.NOT_FOUND, f"{key} is not a project of this index: only local files can be "
                              f"{'yanked' if wanted.action == YANK else 'unyanked'}.")
        # The project exists: asking cannot make the user its first uploader.
        yield self.authorize(event.user, key, "yank")
        project = self.store.snapshot.get(key)
        if project is None:
            raise UploadError(http.NOT_FOUND, f"{key} is not a project of this index.")
        if wanted.version is not None:
            files = release_files(project, wanted.version)
            if not files:
                shown = wanted.version.encode("unicode_escape").decode("ascii")[:100]
                raise UploadError(http.NOT_FOUND, f"{key} has no release {shown}.")
            event.version = str(files[0].version)
            what = f"{key} {files[0].version}"
        else:
            by_name = {f.filename: f for f in project.files}
            files = []
            for filename in dict.fromkeys(wanted.filenames):
                f = by_name.get(filename)
                if f is None:
                    shown = filename.encode("unicode_escape").decode("ascii")[:200]
                    parsed = parse_filename(filename)
                    if parsed is not None and parsed.project != key:
                        raise bad(f"{shown} is not a file of {key}.")
                    raise UploadError(http.NOT_FOUND, f"{key} has no file {shown}.")
                files.append(f)
            what = ", ".join(f.filename for f in files)
            versions = {str(f.version) for f in files}
            if len(versions) == 1:
                event.version = versions.pop()
        event.file = ",".join(f.filename for f in files)
        reason = wanted.reason
        for f in files:
            self._expected[(f.project, f.filename)] = reason
        try:
            changed = yield self.store.setYanked(files, reason)
        except StoreUnavailable as e:
            # The replicas' catalog is away: 503, nothing changed.
            raise unavailable(e)
        finally:
            for f in files:
                self._expected.pop((f.project, f.filename), None)
        count = f"{len(files)} file" + ("" if len(files) == 1 else "s")
        if wanted.action == YANK:
            because = f": {reason}" if reason else " (no reason given)"
            if changed:
                message = f"Yanked {what} ({count}){because}."
            else:
                message = f"{what} was already yanked with that reason{because}."
        elif changed:
            message = f"Unyanked {what} ({count})."
        else:
            message = f"{what} was not yanked."
        return Yanked(list(changed), message)

    def _changed(self, snapshot: IndexSnapshot, changed: frozenset[str]) -> None:
        """Audit the yank changes that did not come through L{request}."""
        before, self._seen = self._seen, snapshot
        if not self.store.ready or before.yanks is snapshot.yanks:
            return
        for key in sorted(changed):
            old, new = before.yanked(key), snapshot.yanked(key)
            if old == new:
                continue
            project = snapshot.get(key)
            listed = {f.filename for f in project.files} if project is not None else set()
            for filename in sorted(set(old) | set(new)):
                reason = new.get(filename)
                if reason == old.get(filename):
                    continue
                expected = self._expected.get((key, filename), 0)
                if expected == reason:
                    continue
                if reason is None and filename not in listed:
                    # Forgotten with a file deleted through pypid (audited as a removal).
                    continue
                action = YANK if reason is not None else UNYANK
                message = "changed outside pypid's API (the yank file, or another replica)"
                if reason:
                    message += f"; reason: {reason}"
                parsed = parse_filename(filename)
                self.audit.record(AuditEvent(
                    action=action, result="ok", project=key,
                    version=str(parsed.version) if parsed is not None else "-",
                    file=filename, status=http.OK, message=message,
                ))
