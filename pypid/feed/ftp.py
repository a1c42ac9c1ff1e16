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
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IConsumer
from twisted.logger import Logger
from twisted.protocols import ftp
from twisted.python.filepath import FilePath
from zope.interface import implementer

from pypid.feed.audit import AuditEvent, AuditLog
from pypid.store import complete

from pypid.store.directory import landing
from pypid.index.filenames import parse_filename
from pypid.store.interfaces import IPackageStore
from pypid.store.directory.scan import resolve_inside
from pypid.feed.checks import UploadError, check_archive, check_filename
from pypid.threads import Threads



class Refused(ftp.FTPCmdError):
    """550 Requested action not taken: <why>."""

    errorCode = ftp.REQ_ACTN_NOT_TAKEN


class TooLarge(ftp.FTPCmdError):
    errorCode = ftp.EXCEEDED_STORAGE_ALLOC


@dataclass
class FTPUploads:
    """What every FTP session shares: where files go and the upload rules."""

    store: IPackageStore
    #: The first package directory.
    root: str
    #: Hidden directory of temporary files, on the same filesystem.
    spool: str
    reactor: object
    #: Runs the blocking steps (L{pypid.threads.Threads}).
    threads: Threads
    overwrite: bool = False
    max_size: int = 1024 ** 3
    #: The per-project rights of HTTP uploads (L{pypid.auth.acl.AclFile}), if any.
    acl: Optional[object] = None
    #: Where each upload and refusal is recorded.
    audit: AuditLog = field(default_factory=AuditLog)

    def thread(self, f, *args) -> Deferred:
        return self.threads(f, *args)


@implementer(ftp.IWriteFile, IConsumer)
class _Upload:
    """
    One C{STOR}: the L{IWriteFile} Twisted's FTP writes into, and the
    consumer it writes with. Data goes to a temporary file (written and
    hashed as it comes); C{close} checks and lands it, or throws it away.
    """

    def __init__(self, shell: "UploadShell", filename: str, directory: str,
                 writer: landing.HashingWriter) -> None:
        self.shell = shell
        self.filename = filename
        self.directory = directory
        self.writer = writer
        self.state = "open"
        self.too_large = False
        self.producer = None

    # IWriteFile

    def receive(self) -> Deferred:
        return succeed(self)

    def close(self) -> Deferred:
        return self.shell.land(self)

    # IConsumer

    def registerProducer(self, producer, streaming) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        if self.state != "open" or self.too_large:
            return
        if self.writer.size + len(data) > self.shell.uploads.max_size:
            self.too_large = True
            if self.producer is not None:
                self.producer.stopProducing()
            return
        self.writer.write(data)


def _hidden(segments: list[str]) -> bool:
    return any(not s or s.startswith(".") for s in segments)


class UploadShell(ftp.FTPShell):
    """An L{ftp.IFTPShell} over the first package directory that only receives distributions."""

    log = Logger()

    def __init__(self, uploads: FTPUploads, user: str) -> None:
        super().__init__(FilePath(uploads.root))
        self.uploads = uploads
        self.user = user
        #: The client's address, for the audit log (set once logged in).
        self.client = "-"
        self._uploads: set[_Upload] = set()

    # Looking around: not at hidden things, and nothing is downloaded.

    def access(self, path):
        if _hidden(path):
            return fail(ftp.FileNotFoundError("/".join(path)))
        return super().access(path)

    def stat(self, path, keys=()):
        if _hidden(path):
            return fail(ftp.FileNotFoundError("/".join(path)))
        return super().stat(path, keys)

    def list(self, path, keys=()):
        if _hidden(path):
            return fail(ftp.FileNotFoundError("/".join(path)))
        return super().list(path, keys).addCallback(
            lambda entries: [e for e in entries if not _name(e[0]).startswith(".")]
        )

    def openForReading(self, path):
        return fail(ftp.PermissionDeniedError("/".join(path)))

    def makeDirectory(self, path):
        return fail(ftp.PermissionDeniedError("/".join(path)))

    def removeDirectory(self, path):
        return fail(ftp.PermissionDeniedError("/".join(path)))

    def removeFile(self, path):
        return fail(ftp.PermissionDeniedError("/".join(path)))

    def rename(self, fromPath, toPath):
        return fail(ftp.PermissionDeniedError("/".join(fromPath)))

    # Uploading.

    def openForWriting(self, path):
        if not path or _hidden(path):
            return fail(Refused("not a distribution file name"))
        filename = path[-1]
        parsed = parse_filename(filename)
        try:
            if parsed is None:
                raise UploadError(400, f"'{filename[:200]}' is not a wheel or sdist file name.")
            check_filename(filename, None, parsed.name, parsed.version)
        except UploadError as e:
            return fail(Refused(e.message))
        directory = self._path(path[:-1]).path
        if not os.path.isdir(directory) or resolve_inside(directory, self.uploads.root) is None:
            return fail(ftp.FileNotFoundError("/".join(path[:-1])))
        d = self._authorize(parsed, filename)
        d.addCallback(lambda _: self.uploads.thread(landing.HashingWriter, self.uploads.spool))
        d.addCallback(lambda writer: self._opened(_Upload(self, filename, directory, writer)))
        return d

    def _event(self, filename: str, status: int, message: str) -> AuditEvent:
        """The audit record of an upload of C{filename}: the shape of HTTP uploads'."""
        parsed = parse_filename(filename)
        return AuditEvent(
            "ftp_upload", "ok" if status == 200 else "refused", self.user, self.client,
            parsed.project if parsed else "-", str(parsed.version) if parsed else "-", filename, status, message)

    def _authorize(self, parsed, filename: str) -> Deferred:
        acl = self.uploads.acl
        if acl is None:
            return succeed(None)
        project = parsed.project
        store = self.uploads.store
        d = store.whenReady()
        d.addCallback(lambda _: self.uploads.thread(
            acl.authorize, self.user, project, store.snapshot.get(project) is not None))

        def decided(decision):
            if not decision.allowed:
                why = f"Forbidden: {self.user} may not upload to {project} ({decision.reason})."
                self.uploads.audit.record(self._event(filename, 403, why))
                raise Refused(why)
            if decision.claimed:
                self.uploads.audit.owner_claimed(self.user, project)

        return d.addCallback(decided)

    def _opened(self, upload: _Upload) -> _Upload:
        self._uploads.add(upload)
        return upload

    def land(self, upload: _Upload) -> Deferred:
        """The transfer ended: check the file, and land it or throw it away."""
        if upload.state != "open":
            return fail(Refused("the session ended before the transfer did"))
        upload.state = "closing"
        uploads = self.uploads
        if upload.too_large:
            d = fail(TooLarge())
        else:
            d = uploads.thread(_check, upload.writer, upload.filename)
            d.addCallback(lambda _: uploads.store.whenReady())
            d.addCallback(lambda _: uploads.thread(
                landing.place, upload.writer.path, upload.writer.hashes["sha256"].hexdigest(),
                self._target(upload), uploads.overwrite))
            d.addCallback(lambda placed: uploads.store.refresh([placed.path]).addCallback(lambda _: placed))

        def landed(placed):
            message = (f"{upload.filename} is already stored with the same content."
                       if placed.outcome == "identical" else f"{upload.filename} {placed.outcome}.")
            uploads.audit.record(self._event(upload.filename, 200, message))

        def refused(failure):
            reason = failure.value.message if failure.check(UploadError) else None
            code = failure.value.code if failure.check(UploadError) else 413 if failure.check(TooLarge) else 500
            uploads.audit.record(self._event(upload.filename, code, reason or failure.getErrorMessage()))
            if reason is not None:
                raise Refused(reason)
            return failure

        def done(result):
            upload.state = "done"
            self._uploads.discard(upload)
            # Landed (the temporary name is gone) or refused: nothing stays.
            return uploads.thread(_discard, upload.writer).addBoth(lambda _: result)

        return d.addCallbacks(landed, refused).addBoth(done)

    def _target(self, upload: _Upload) -> str:
        """Where the file goes: over the listed file of that name, else where it was sent."""
        parsed = parse_filename(upload.filename)
        project = self.uploads.store.snapshot.get(parsed.project) if parsed else None
        roots = getattr(self.uploads.store, "roots", None)
        for distfile in project.files if project is not None else ():
            if distfile.filename == upload.filename and roots is not None:
                return os.path.join(roots[distfile.root], *distfile.path.split("/"))
        return os.path.join(upload.directory, upload.filename)

    def logout(self) -> None:
        """The session ended: uploads that never got to land are thrown away."""
        for upload in list(self._uploads):
            if upload.state == "open":
                upload.state = "done"
                self.uploads.thread(_discard, upload.writer)
        self._uploads.clear()


def _name(name) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name


def _check(writer: landing.HashingWriter, filename: str) -> None:
    """In a thread: the transfer is a complete, valid distribution (else UploadError)."""
    writer.finish()
    with open(writer.path, "rb") as f:
        reason = complete.check_tail(f, writer.size, filename)
        if reason is None:
            check = complete.stream_check(filename)
            if check is not None:
                f.seek(0)
                while chunk := f.read(1024 * 1024):
                    check.update(chunk)
                reason = check.result()
    if reason is not None:
        raise UploadError(400, f"the transfer is not a complete archive ({reason.split(': ', 1)[-1]})")
    parsed = parse_filename(filename)
    check_archive(writer.path, _Named(filename, parsed), writer.size)


class _Named:
    """What L{check_archive} reads of an upload."""

    def __init__(self, filename, parsed) -> None:
        self.filename = filename
        self.parsed = parsed


def _discard(writer: landing.HashingWriter) -> None:
    writer.discard()


@implementer(IRealm)
class UploadRealm:
    def __init__(self, uploads: FTPUploads) -> None:
        self.uploads = uploads

    def requestAvatar(self, avatarId, mind, *interfaces):
        if ftp.IFTPShell not in interfaces:
            raise NotImplementedError("only FTP shells here")
        shell = UploadShell(self.uploads, _name(avatarId))
        return ftp.IFTPShell, shell, shell.logout


class UploadFTP(ftp.FTP):
    """
    Passive data ports listen on the address the client reached, nowhere
    else; the shell learns the client's address at login (for the audit log).
    """

    def ftp_PASS(self, password):
        def logged_in(reply):
            shell = getattr(self, "shell", None)
            if isinstance(shell, UploadShell):
                shell.client = getattr(self.transport.getPeer(), "host", "-")
            return reply

        return super().ftp_PASS(password).addCallback(logged_in)

    def listenFactory(self, port, factory, interface=""):
        factory.noisy = False  # one data connection per transfer: no log lines for each
        return self.factory.reactor.listenTCP(
            port, factory, interface=interface or self.transport.getHost().host
        )


class UploadFTPFactory(ftp.FTPFactory):
    protocol = UploadFTP
    allowAnonymous = False
    welcomeMessage = "pypid: upload wheels and sdists"

    def __init__(self, portal: Portal, reactor) -> None:
        super().__init__(portal)
        self.reactor = reactor


def ftp_factory(uploads: FTPUploads, checker) -> UploadFTPFactory:
    """The FTP server factory: logins checked by C{checker}, never anonymous."""
    return UploadFTPFactory(Portal(UploadRealm(uploads), [checker]), uploads.reactor)
