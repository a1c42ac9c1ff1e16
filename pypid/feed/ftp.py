"""
FTP uploads into the first package directory: C{--ftp ENDPOINT}.

A twisted.protocols.ftp server in the same daemon, for the tools and
devices that can only drop files by FTP. Users log in with the password
file of HTTP uploads (C{-P}); there is no anonymous login. Only
distribution files are accepted, under their own names (the same rules as
HTTP uploads); a transfer is written to a hidden temporary file and lands
under its name, atomically, only once it is complete and a valid archive.
An aborted or cut-short transfer leaves nothing behind. An existing file is
replaced only with C{--overwrite} (the same bytes again are accepted). The
client sees the file listed by the index when C{STOR} is answered.

Logged-in users may list the package directory and change into its
subdirectories; they cannot download, delete, rename or make directories.

This is glue: a C{STOR} is staged in the store as it arrives and handed to
the L{pypid.feed.publish.Publisher} (the rules, the store, the audit line)
when the transfer ends; the outcome becomes the FTP reply. Only browsing
looks at the directory itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, TypeVar, cast

from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IConsumer, IListeningPort, IProducer, IPushProducer
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.protocols import ftp
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.web import http
from zope.interface import implementer

from pypid.counts import counted
from pypid.feed.audit import AuditEvent
from pypid.feed.checks import INSUFFICIENT_STORAGE, Declared, UploadError, declared_by_name
from pypid.feed.incoming import SpoolBudget, StagedWriter, upload_error
from pypid.feed.publish import Published, Publisher
from pypid.store.interfaces import IStaged
from pypid.threads import Threads

if TYPE_CHECKING:
    from pypid.auth.logins import Logins

_T = TypeVar("_T")


class Refused(ftp.FTPCmdError):
    """550 Requested action not taken: <why>."""

    errorCode = ftp.REQ_ACTN_NOT_TAKEN

    def __init__(self, why: str) -> None:
        super().__init__(why)  # type: ignore[no-untyped-call]  # Twisted's ftp module is unannotated


class NoRoom(ftp.FTPCmdError):
    """552 and why: over --max-upload-size, or no room (a full disk, the spool budget)."""

    errorCode = ftp.EXCEEDED_STORAGE_ALLOC

    def __init__(self, why: str) -> None:
        super().__init__(why)  # type: ignore[no-untyped-call]  # as above

    def response(self) -> str:
        return f"552 {self.errorMessage[0]}"


@dataclass
class FTPUploads:
    """What every FTP session shares: the publisher, and the directory it shows."""

    publisher: Publisher
    #: The first package directory, which sessions list and change into.
    root: str
    reactor: Any
    #: Runs the blocking steps (L{pypid.threads.Threads}).
    threads: Threads
    max_size: int = 1024 ** 3
    #: The bytes all uploads in flight may hold (C{--max-spool}), shared with HTTP.
    budget: SpoolBudget = field(default_factory=lambda: SpoolBudget(None))


@implementer(ftp.IWriteFile, IConsumer)
class _Upload:
    """
    One C{STOR}: the L{IWriteFile} Twisted's FTP writes into, and the
    consumer it writes with. Data goes into the store's staging area by a
    L{StagedWriter} (written and hashed in threads, the data connection
    paused while the disk catches up), within the size limit and the spool
    budget; C{close} hands it to the publisher, or throws it away.
    """

    def __init__(self, shell: "UploadShell", name: str, declared: Declared, staged: IStaged,
                 event: AuditEvent) -> None:
        self.shell = shell
        #: The name to publish: the file name below the folders it was sent to.
        self.name = name
        self.declared = declared
        self.staged = staged
        self.event = event
        self.state = "open"
        #: Why the rest of the transfer is dropped: (code, message), or None.
        self.refusal: Optional[tuple[int, str]] = None
        self.received = 0
        self.producer: Optional[IPushProducer] = None
        self.writer = StagedWriter(staged, shell.uploads.threads, self._pause, self._resume)

    # IWriteFile

    def receive(self) -> Deferred[_Upload]:
        return succeed(self)

    def close(self) -> Deferred[None]:
        return self.shell.land(self)

    # IConsumer

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        # Twisted's FTP data connection registers itself: a push producer (streaming).
        self.producer = cast(IPushProducer, producer)

    def unregisterProducer(self) -> None:
        self.producer = None

    def _pause(self) -> None:
        if self.producer is not None:
            self.producer.pauseProducing()

    def _resume(self) -> None:
        if self.producer is not None:
            self.producer.resumeProducing()

    def write(self, data: bytes) -> None:
        if self.state != "open" or self.refusal is not None:
            return
        uploads = self.shell.uploads
        if self.received + len(data) > uploads.max_size:
            self._refuse(http.REQUEST_ENTITY_TOO_LARGE,
                         f"Request Entity Too Large: over this server's limit of "
                         f"{counted(uploads.max_size, 'byte')} (--max-upload-size).")
            return
        if not uploads.budget.reserve(len(data)):
            self._refuse(INSUFFICIENT_STORAGE, uploads.budget.refusal())
            return
        self.received += len(data)
        self.writer.write(data)

    def _refuse(self, code: int, message: str) -> None:
        self.refusal = (code, message)
        if self.producer is not None:
            self.producer.stopProducing()

    def release(self) -> None:
        """Give back what this transfer held of the spool budget."""
        received, self.received = self.received, 0
        self.shell.uploads.budget.release(received)


def _hidden(segments: list[str]) -> bool:
    return any(not s or s.startswith(".") for s in segments)


#: An FTP path: its segments.
_Segments = list[str]
#: What C{stat} gives (one value per key asked for), and C{list} (a name and its stat, for each).
_Stats = list[Any]
_Listing = list[tuple[Any, _Stats]]


class UploadShell(ftp.FTPShell):
    """An L{ftp.IFTPShell} over the first package directory that only receives distributions."""

    log = Logger()

    def __init__(self, uploads: FTPUploads, user: str) -> None:
        super().__init__(FilePath(uploads.root))  # type: ignore[no-untyped-call]  # as above
        self.uploads = uploads
        self.user = user
        #: The client's address, for the audit log (set once logged in).
        self.client = "-"
        self._uploads: set[_Upload] = set()

    # Looking around: not at hidden things, and nothing is downloaded.

    def access(self, path: _Segments) -> Deferred[None]:
        if _hidden(path):
            return fail(ftp.FileNotFoundError("/".join(path)))
        allowed: Deferred[None] = super().access(path)  # type: ignore[no-untyped-call]  # as above
        return allowed

    def stat(self, path: _Segments, keys: Sequence[str] = ()) -> Deferred[_Stats]:
        if _hidden(path):
            return fail(ftp.FileNotFoundError("/".join(path)))
        stats: Deferred[_Stats] = super().stat(path, keys)  # type: ignore[no-untyped-call]  # as above
        return stats

    def list(self, path: _Segments, keys: Sequence[str] = ()) -> Deferred[_Listing]:
        if _hidden(path):
            return fail(ftp.FileNotFoundError("/".join(path)))
        listed: Deferred[_Listing] = super().list(path, keys)  # type: ignore[no-untyped-call]  # as above
        return listed.addCallback(
            lambda entries: [e for e in entries if not _name(e[0]).startswith(".")]
        )

    def openForReading(self, path: _Segments) -> Deferred[None]:
        return fail(ftp.PermissionDeniedError("/".join(path)))

    def makeDirectory(self, path: _Segments) -> Deferred[None]:
        return fail(ftp.PermissionDeniedError("/".join(path)))

    def removeDirectory(self, path: _Segments) -> Deferred[None]:
        return fail(ftp.PermissionDeniedError("/".join(path)))

    def removeFile(self, path: _Segments) -> Deferred[None]:
        return fail(ftp.PermissionDeniedError("/".join(path)))

    def rename(self, fromPath: _Segments, toPath: _Segments) -> Deferred[None]:
        return fail(ftp.PermissionDeniedError("/".join(fromPath)))

    # Uploading.

    def openForWriting(self, path: _Segments) -> Deferred[_Upload]:
        if not path or _hidden(path):
            return fail(Refused("not a distribution file name"))
        publisher = self.uploads.publisher
        event = AuditEvent(action="ftp_upload", user=self.user, client=self.client)
        try:
            declared = declared_by_name(path[-1])
        except UploadError as e:
            publisher.refused(event, e.code, e.message)
            return fail(Refused(e.message))
        directory: FilePath[str] = self._path(path[:-1])  # type: ignore[no-untyped-call]  # as above
        root = os.path.realpath(self.uploads.root)
        real = os.path.realpath(directory.path)
        if not directory.isdir() or not (real == root or real.startswith(root + os.sep)):
            return fail(ftp.FileNotFoundError("/".join(path[:-1])))
        event.project, event.version, event.file = declared.project, str(declared.version), declared.filename

        def refused(failure: Failure) -> None:
            failure.trap(UploadError)
            publisher.refused(event, failure.value.code, failure.value.message)
            raise Refused(failure.value.message)

        # Refused before a byte is sent, when the ACL says no.
        d = publisher.authorize(self.user, declared.project).addErrback(refused)
        return d.addCallback(lambda _: self.uploads.threads(publisher.store.stage)).addCallback(
            lambda staged: self._opened(_Upload(self, "/".join(path), declared, staged, event)))

    def _opened(self, upload: _Upload) -> _Upload:
        self._uploads.add(upload)
        return upload

    def land(self, upload: _Upload) -> Deferred[None]:
        """The transfer ended: publish it, or throw it away."""
        if upload.state != "open":
            return fail(Refused("the session ended before the transfer did"))
        upload.state = "closing"
        uploads = self.uploads
        if upload.refusal is not None:
            code, message = upload.refusal
            uploads.publisher.refused(upload.event, code, message)
            d: Deferred[Published] = upload.writer.abort().addCallback(lambda _: fail(NoRoom(message)))
        else:
            def written(_: object) -> Deferred[Published]:
                return uploads.publisher.publish(upload.event, upload.name, upload.staged,
                                                 declared=upload.declared, streamed=True)

            def not_written(failure: Failure) -> Deferred[Published]:
                failure = upload_error(failure)
                if failure.check(UploadError):
                    uploads.publisher.refused(upload.event, failure.value.code, failure.value.message)
                return upload.writer.abort().addBoth(lambda _: failure)

            d = upload.writer.finish().addCallbacks(written, not_written)

        def refused(failure: Failure) -> None:
            if failure.check(UploadError):
                if failure.value.code in (http.REQUEST_ENTITY_TOO_LARGE, INSUFFICIENT_STORAGE):
                    raise NoRoom(failure.value.message)
                raise Refused(failure.value.message)
            failure.raiseException()

        def done(result: _T) -> _T:
            upload.state = "done"
            upload.release()
            self._uploads.discard(upload)
            return result

        return d.addCallbacks(lambda _: None, refused).addBoth(done)

    def logout(self) -> None:
        """The session ended: uploads that never got to land are thrown away."""
        for upload in list(self._uploads):
            if upload.state == "open":
                upload.state = "done"
                upload.writer.abort().addBoth(_release, upload)
        self._uploads.clear()


def _release(_: object, upload: _Upload) -> None:
    upload.release()


def _name(name: str | bytes) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name


@implementer(IRealm)
class UploadRealm:
    def __init__(self, uploads: FTPUploads) -> None:
        self.uploads = uploads

    def requestAvatar(
        self, avatarId: str | bytes | tuple[()], mind: object, *interfaces: Any
    ) -> tuple[Any, UploadShell, Callable[[], None]]:
        if ftp.IFTPShell not in interfaces:
            raise NotImplementedError("only FTP shells here")
        if isinstance(avatarId, tuple):
            # (ANONYMOUS: the factory refuses anonymous logins before they get here;
            # pypid's checkers give str avatar ids.)
            raise NotImplementedError("no anonymous FTP shells")
        shell = UploadShell(self.uploads, _name(avatarId))
        return ftp.IFTPShell, shell, shell.logout


class Throttled(ftp.FTPCmdError):
    """530 and why: the client is over its limit of failed logins."""

    def response(self) -> str:
        return f"530 {self.errorMessage[0]}"


class UploadFTP(ftp.FTP):
    """
    Passive data ports listen on the address the client reached, nowhere
    else; the shell learns the client's address at login (for the audit log).
    """

    log = Logger()
    # Twisted's FTP declares these None: the shell is set at login (the
    # realm's UploadShell), the data connection by PASV or PORT.
    shell: UploadShell  # type: ignore[assignment]
    dtpInstance: Optional[ftp.DTP]  # type: ignore[assignment]
    #: The current directory, as segments (set at login).
    workingDirectory: list[str]

    def ftp_PASS(self, password: bytes) -> Deferred[object]:
        # Logins go through pypid.auth.logins with this client's address:
        # failed logins are limited per address, as for HTTP.
        host = getattr(self.transport.getPeer() if self.transport is not None else None, "host", "-")
        retry = self.factory.logins.retry_after(host)
        if retry is not None:
            del self._user
            self.state = self.UNAUTH
            later: Deferred[object] = self.factory.logins.later(
                Throttled(f"Too many failed logins from your address; try again in {counted(retry, 'second')}."))  # type: ignore[no-untyped-call]  # as above
            return later
        self.portal = Portal(  # type: ignore[assignment]  # FTP declares it None, set at login
            self.factory.portal.realm, [self.factory.logins.checker_for(host, "ftp")])

        def logged_in(reply: _T) -> _T:
            shell = getattr(self, "shell", None)
            if isinstance(shell, UploadShell):
                shell.client = host
            return reply

        passed: Deferred[object] = super().ftp_PASS(password)  # type: ignore[no-untyped-call]  # as above
        return passed.addCallback(logged_in)

    def ftp_STOR(self, path: str) -> Deferred[tuple[str, ...]]:
        """
        C{STOR}, as Twisted's FTP answers it, but for the log: a refused
        upload is the publisher's one audit line (with the reason), not an
        "Unexpected error" traceback; only what is unexpected is logged as
        a failure.
        """
        if self.dtpInstance is None:
            raise ftp.BadCmdSequenceError("PORT, PASV, EPRT, or EPSV required before STOR")
        try:
            segments = ftp.toSegments(self.workingDirectory, path)
        except ftp.InvalidPath:
            return fail(ftp.FileNotFoundError(path))
        # No command timeout while the data connection works.
        self.setTimeout(None)  # type: ignore[no-untyped-call]  # as above

        def not_opened(failure: Failure) -> tuple[str, ...]:
            if failure.check(ftp.FTPCmdError):
                return (failure.value.errorCode, "/".join(segments))
            self.log.failure("opening {path} for an FTP upload failed", failure, path="/".join(segments))
            return (ftp.FILE_NOT_FOUND, "/".join(segments))

        def opened(upload: _Upload) -> Deferred[tuple[str, ...]]:
            d = upload.receive().addCallback(self._transfer)
            d.addCallback(lambda _: upload.close())
            return d.addCallbacks(lambda _: (ftp.TXFR_COMPLETE_OK,), transfer_failed)

        def transfer_failed(failure: Failure) -> Failure | tuple[str, ...]:
            if failure.check(ftp.FTPCmdError):
                return failure
            self.log.failure("FTP upload of {path} failed", failure, path="/".join(segments))
            return (ftp.CNX_CLOSED_TXFR_ABORTED,)

        def timeout_again(result: _T) -> _T:
            self.setTimeout(self.factory.timeOut)  # type: ignore[no-untyped-call]  # as above
            return result

        d = self.shell.openForWriting(segments).addCallbacks(opened, not_opened)
        return d.addBoth(timeout_again)

    def _transfer(self, consumer: IConsumer) -> Deferred[None]:
        """Start the data connection's transfer into C{consumer}; fires when it is done."""
        dtp = self.dtpInstance
        # ftp_STOR checked; should the data connection be gone since, the transfer fails.
        assert dtp is not None
        target: object = consumer
        if not self.binary:
            target = ftp.ASCIIConsumerWrapper(consumer)
        d: Deferred[None] = dtp.registerConsumer(target)
        self.reply(ftp.DATA_CNX_ALREADY_OPEN_START_XFR if dtp.isConnected  # type: ignore[no-untyped-call]  # as above
                   else ftp.FILE_STATUS_OK_OPEN_DATA_CNX)
        return d

    def listenFactory(self, port: int, factory: ServerFactory, interface: str = "") -> IListeningPort:  # type: ignore[override]  # FTP's is unannotated, with other names
        factory.noisy = False  # one data connection per transfer: no log lines for each
        listening: IListeningPort = self.factory.reactor.listenTCP(
            port, factory, interface=interface or getattr(self.transport.getHost() if self.transport else None, "host", "")
        )
        return listening


class UploadFTPFactory(ftp.FTPFactory):
    protocol = UploadFTP
    allowAnonymous = False
    welcomeMessage = "pypid: upload wheels and sdists"

    def __init__(self, portal: Portal, reactor: Any, logins: Logins) -> None:
        super().__init__(portal)  # type: ignore[no-untyped-call]  # as above
        self.reactor = reactor
        self.logins = logins


def ftp_factory(uploads: FTPUploads, logins: Logins) -> UploadFTPFactory:
    """The FTP server factory: logins checked by C{logins} (L{pypid.auth.logins.Logins}), never anonymous."""
    return UploadFTPFactory(Portal(UploadRealm(uploads), []), uploads.reactor, logins)
