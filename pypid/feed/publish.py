"""
The one publish pipeline: every upload and removal, by HTTP or FTP, goes
through a L{Publisher}, which holds the rules; the protocols are glue that
turns a form or a C{STOR} into a call here, and the outcome or
L{UploadError} into a status or an FTP reply.

An upload: the ACL (C{--acl}), the digests the client declared, the archive
checked in a thread, then L{IPackageStore.publish} (which decides where the
bytes go, and fires once the index lists the file); one audit line and the
upload metrics either way. The staged bytes are thrown away at the end,
whatever happened.
"""

from __future__ import annotations

from typing import Any, Generator, NamedTuple, Optional, Protocol, TypeVar

from packaging.version import Version
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http

from pypid.auth.tokens import scope_refusal
from pypid.counts import counted
from pypid.feed.audit import AuditEvent, AuditLog
from pypid.feed.checks import Declared, UploadError, bad, check_archive, check_digests, declared_by_name, no_room
from pypid.index.names import normalize
from pypid.ops.metrics import Metrics
from pypid.store import complete
from pypid.store.interfaces import AlreadyStored, BadName, IPackageStore, IStaged, NotListed, StoreFull, StoreUnavailable
from pypid.threads import Threads

#: The answer to a failure that is no refusal (details in the server log).
INTERNAL = "Internal error while storing the upload; see the server log."


_Outcome = TypeVar("_Outcome", bound="_Said")


class _Said(Protocol):
    """An outcome the audit line quotes."""

    @property
    def message(self) -> str: ...


class Published(NamedTuple):
    """An upload stored."""

    #: C{created}, C{replaced} or C{identical} (the same bytes were there).
    outcome: str
    #: The path the index lists it under.
    path: str
    #: The one-line answer (C{x.whl created.}).
    message: str


def metric_result(code: int, message: str) -> str:
    """The C{result} label of C{pypid_uploads_total} for an answer."""
    if code == 200:
        return "stored"
    if code == 400:
        return "exists" if message.startswith("File already exists") else "invalid"
    return {401: "unauthorized", 403: "forbidden", 404: "not_found", 410: "gone",
            413: "too_large", 507: "no_room"}.get(code, "error")


#: Actions whose outcome counts in the upload metrics ("-": refused before
#: the action was known). (The Site counts the bodies it refuses unread.)
UPLOAD_ACTIONS = ("file_upload", "ftp_upload", "-")


def _complete(staged: IStaged, filename: str) -> None:
    """In a thread: a transfer without framing (FTP) must be a whole archive."""
    with staged.reader() as f:
        reason = complete.check_tail(f, staged.size, filename)
        if reason is None:
            check = complete.stream_check(filename)
            if check is not None:
                f.seek(0)
                while chunk := f.read(1024 * 1024):
                    check.update(chunk)
                reason = check.result()
    if reason is not None:
        raise bad(f"the transfer is not a complete archive ({reason.split(': ', 1)[-1]})")


def _check_archive(staged: IStaged, declared: Declared) -> None:
    """In a thread: the archive check, on the staged bytes."""
    with staged.reader() as f:
        check_archive(f, declared, staged.size)


class Publisher:
    """
    The rules of uploads and removals, over a store.

    @param acl: per-project rights (L{pypid.auth.acl.AclFile}), or L{None}.
    @param overwrite: whether an upload may replace a file with other bytes.
    """

    log = Logger()

    def __init__(self, store: IPackageStore, acl: Optional[Any], audit: AuditLog, threads: Threads,
                 overwrite: bool = False, rules: Optional[Any] = None, metrics: Optional[Metrics] = None) -> None:
        """
        @param rules: the opt-in release rules (L{pypid.feed.rules.ReleaseRules}), if any.
        @param metrics: where uploads are counted (the process's L{Metrics}).
        """
        self.store = store
        self.metrics = metrics if metrics is not None else Metrics()
        self.acl = acl
        self.audit = audit
        self.threads = threads
        self.overwrite = overwrite
        self.rules = rules

    def record(self, event: AuditEvent, stored: int = 0) -> None:
        """One audit line for C{event}, and the upload metrics when it is an upload."""
        if event.action in UPLOAD_ACTIONS:
            self.metrics.uploads.inc(result=metric_result(event.status, event.message))
            if stored:
                self.metrics.upload_bytes.inc(stored)
        self.audit.record(event)

    def refused(self, event: AuditEvent, code: int, message: str) -> None:
        """Record a refusal decided before the pipeline (no login, a bad form, a file too large)."""
        event.result, event.status, event.message = "refused", code, message
        self.record(event)

    def answered(self, event: AuditEvent, code: int, message: str) -> None:
        """Record an answer decided outside the pipeline (a refusal, or a 200 for a register)."""
        if code == http.OK:
            event.result, event.status, event.message = "ok", code, message
            self.record(event)
        else:
            self.refused(event, code, message)

    @inlineCallbacks
    def authorize(self, user: str, project: str, action: str = "upload") -> Generator[Deferred[Any], Any, None]:
        """
        Whether C{user} may upload to C{project} (C{action} C{"upload"}),
        or remove from it (C{"remove"}), or yank and unyank its files
        (C{"yank"}); the ACL gives all three together. Fires with L{None},
        or fails with L{UploadError} 403. A first uploader who becomes the
        owner is an audit line. A user logged in with an API token
        (L{pypid.auth.tokens.TokenUser}) is also held to the token's scope.
        """
        refusal = scope_refusal(user, project, action)
        if refusal is not None:
            raise UploadError(http.FORBIDDEN, refusal)
        if self.acl is None:
            return
        yield self.store.whenReady()
        exists = self.store.snapshot.get(project) is not None
        try:
            decision = yield self.threads(self.acl.authorize, user, project, exists)
        except StoreUnavailable as e:
            raise unavailable(e)
        if not decision.allowed:
            raise UploadError(http.FORBIDDEN, f"Forbidden: {user} may not upload to {project} ({decision.reason}).")
        if decision.claimed:
            self.audit.owner_claimed(user, project)

    def publish(
        self,
        event: AuditEvent,
        name: str,
        staged: IStaged,
        signature: Optional[bytes] = None,
        declared: Optional[Declared] = None,
        streamed: bool = False,
    ) -> Deferred[Published]:
        """
        Store the upload C{staged} as C{name} (its file name, perhaps below
        folders: C{sub/x.whl}), with its detached C{signature}. C{event}
        says who asks (action, user, client) and gets the rest.

        @param declared: what the form declared (name, version, digests);
            L{None}: what the file name says.
        @param streamed: the bytes came without framing (FTP): check first
            that the archive is complete.
        @return: a L{Deferred} of L{Published}, once the index lists the
            file; it fails with L{UploadError} for a refusal (and any other
            error for a failure). Either way C{staged} is thrown away, and
            one audit line written.
        """
        d = self._publish(event, name, staged, signature, declared, streamed)
        return self._recorded(d, event, staged)

    @inlineCallbacks
    def _publish(
        self, event: AuditEvent, name: str, staged: IStaged, signature: Optional[bytes],
        declared: Optional[Declared], streamed: bool,
    ) -> Generator[Deferred[Any], Any, Published]:
        if declared is None:
            declared = declared_by_name(name.rsplit("/", 1)[-1])
        event.project, event.version, event.file = declared.project, str(declared.version), declared.filename
        yield self.authorize(event.user, declared.project)
        try:
            digests = yield self.threads(staged.finish)
        except StoreFull as e:
            raise no_room(str(e))
        check_digests(declared.digests, digests)
        if self.rules is not None:
            yield self.rules.check(declared)
        if streamed:
            yield self.threads(_complete, staged, declared.filename)
        yield self.threads(_check_archive, staged, declared)
        try:
            placed = yield self.store.publish(name, staged, self.overwrite, signature, uploader=event.user)
        except AlreadyStored as e:
            if e.listed != declared.filename:
                raise bad(
                    f"File already exists ('{declared.filename}' is the same release file as the stored "
                    f"'{e.listed}', with different content). Remove it first, or run the server with --overwrite."
                )
            raise bad(
                f"File already exists ('{declared.filename}' with different content). "
                "Remove it first, or run the server with --overwrite."
            )
        except BadName as e:
            raise bad(str(e))
        except NotListed as e:
            raise bad(f"Invalid distribution file: {e}")
        except StoreFull as e:
            raise no_room(str(e))
        except StoreUnavailable as e:
            raise unavailable(e)
        stored = placed.path.rsplit("/", 1)[-1]
        if placed.outcome == "identical":
            message = f"{declared.filename} is already stored with the same content."
            if stored != declared.filename:
                message = f"{declared.filename} is already stored with the same content (as {stored})."
        else:
            message = f"{declared.filename} {placed.outcome}."
            if stored != declared.filename:
                message = f"{declared.filename} {placed.outcome} (as {stored}, the same release file)."
        return Published(placed.outcome, placed.path, message)

    def _recorded(self, d: Deferred[_Outcome], event: AuditEvent, staged: Optional[IStaged]) -> Deferred[_Outcome]:
        """Audit and count C{d}'s outcome; then throw C{staged} away."""
        size = staged.size if staged is not None else 0

        def done(result: _Outcome) -> _Outcome:
            event.result, event.status, event.message = "ok", http.OK, result.message
            self.record(event, 0 if getattr(result, "outcome", None) == "identical" else size)
            return result

        def failed(failure: Failure) -> Failure:
            if failure.check(UploadError):
                self.refused(event, failure.value.code, failure.value.message)
            else:
                self.refused(event, http.INTERNAL_SERVER_ERROR, INTERNAL)
            return failure

        d.addCallbacks(done, failed)
        if staged is not None:
            # Published (the temporary bytes are gone already) or refused.
            d.addBoth(lambda result: self.threads(staged.abort).addBoth(lambda _: result))
        return d

    def remove(self, event: AuditEvent, name: str, version: Version) -> Deferred[Removed]:
        """
        Delete every file of C{name} C{version} (as the form named them).

        @return: a L{Deferred} of L{Removed} once the index no longer lists
            them; it fails with L{UploadError} (403, or 404 when there is
            no such file).
        """
        return self._recorded(self._remove(event, name, version), event, None)

    @inlineCallbacks
    def _remove(self, event: AuditEvent, name: str, version: Version) -> Generator[Deferred[Any], Any, Removed]:
        project = normalize(name)
        event.project, event.version = project, str(version)
        yield self.authorize(event.user, project, "remove")
        yield self.store.whenReady()
        listed = self.store.snapshot.get(project)
        files = [f for f in (listed.files if listed is not None else ()) if f.version == version]
        if not files:
            raise UploadError(http.NOT_FOUND, f"{name} ({version}) not found")
        event.file = ",".join(f.filename for f in files)
        try:
            yield self.store.remove(files)
        except StoreUnavailable as e:
            raise unavailable(e)
        return Removed(len(files), f"Removed {counted(len(files), 'file')} of {name} {version}.")


def unavailable(error: StoreUnavailable) -> UploadError:
    """503: what the store depends on is away (an object store, a catalog); its message says which."""
    return UploadError(http.SERVICE_UNAVAILABLE, f"Service Unavailable: {error}")


class Removed(NamedTuple):
    """A release removed."""

    count: int  # type: ignore[assignment]  # a field named like tuple.count: callers read it
    message: str
