"""
How files arrive, on the command line: C{--overwrite},
C{--max-upload-size}, C{--max-spool}, C{--ftp} and the release rules
(C{--no-filename-reuse}, C{--one-sdist}); and the services built from them
(the upload spool, the FTP server).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from twisted.application.service import Service
from twisted.logger import Logger
from twisted.python import usage

from pypid.auth.options import AuthConfig
from pypid.ops.values import endpoint_description, parse_size
from pypid.store.directory.options import DirectoryConfig

if TYPE_CHECKING:
    from pypid.auth.logins import Logins
    from pypid.feed.ftp import UploadFTPFactory
    from pypid.feed.incoming import SpoolBudget
    from pypid.feed.publish import Publisher
    from pypid.threads import Threads

DEFAULT_MAX_UPLOAD = "1G"
DEFAULT_MAX_SPOOL = "4G"


@dataclass(frozen=True)
class FeedConfig:
    """The checked upload options."""

    #: Where upload bodies are spooled, next to the first package directory
    #: so that a file lands by rename; L{None} when uploads are refused.
    spool: Optional[str] = None
    #: Largest request body, in bytes.
    max_upload_size: int = 1024 ** 3
    #: Most bytes of all uploads in flight at once (HTTP and FTP).
    max_spool: int = 4 * 1024 ** 3
    #: Whether an upload may replace a file with other content.
    overwrite: bool = False
    #: The FTP endpoint (C{--ftp}), if any.
    ftp: Optional[str] = None
    #: A removed file name may not be uploaded again (C{--no-filename-reuse}).
    no_filename_reuse: bool = False
    #: One sdist per release (C{--one-sdist}).
    one_sdist: bool = False

    @property
    def uploads(self) -> bool:
        return self.spool is not None


class FeedOptions(usage.Options):
    """Mixed into L{pypid.tap.Options}; L{check_feed} in postOptions."""

    optParameters = [
        ["max-upload-size", None, DEFAULT_MAX_UPLOAD,
         "Largest request body accepted, e.g. 500M, 2G (bytes; K/M/G/T are powers of 1024)."],
        ["max-spool", None, DEFAULT_MAX_SPOOL,
         "Most bytes of all uploads in flight at once (HTTP and FTP together); beyond it "
         "an upload is answered 507 with Retry-After. At least --max-upload-size."],
        ["ftp", None, None,
         "Also accept uploads by FTP on this endpoint (e.g. tcp:2121), into the first "
         "package directory; logins are checked against -P/--passwords (required)."],
    ]
    optFlags: list[list[str | None]] = [
        ["overwrite", "o", "Allow uploads to replace existing files."],
        ["no-filename-reuse", None,
         "Refuse uploads of a file name that was ever removed from the index (recorded from now on "
         "in .pypid-removed in the first package directory), so that nobody can swap the bytes of a "
         "published file by deleting and uploading it again."],
        ["one-sdist", None, "Refuse a second sdist for a release (one .tar.gz or .zip per version, PEP 527)."],
    ]

    def check_feed(self, directory: DirectoryConfig, auth: AuthConfig) -> FeedConfig:
        sizes = []
        for name in ("max-upload-size", "max-spool"):
            text = str(self[name]).strip()
            try:
                value = parse_size(text)
            except ValueError:
                value = 0
            if value <= 0:
                raise usage.UsageError(f"--{name} {text!r} is not a size such as 500M or 2G.")
            sizes.append(value)
        size, max_spool = sizes
        if max_spool < size:
            if self["max-spool"] != DEFAULT_MAX_SPOOL:
                raise usage.UsageError(
                    f"--max-spool {self['max-spool']} is less than --max-upload-size {self['max-upload-size']}: "
                    "the largest upload would never fit.")
            max_spool = size
        spool = None
        if auth.uploads:
            from pypid.store.directory.landing import INCOMING

            # Only checked here: the directory is made when the service
            # starts, after twistd has dropped privileges.
            root = directory.upload_root
            spool = os.path.join(root, INCOMING)
            if not os.access(spool if os.path.isdir(spool) else root, os.W_OK | os.X_OK):
                raise usage.UsageError(
                    f"uploads go to {root!r}, but it is not writable; make it writable "
                    "or run read-only (no -P, default -a update)."
                )
        ftp = None
        if self["ftp"] is not None:
            ftp = endpoint_description(self["ftp"])
            if auth.passwords is None or spool is None:
                raise usage.UsageError(
                    "--ftp needs -P/--passwords FILE: FTP logins are checked against it "
                    "(there is no anonymous FTP)."
                )
        return FeedConfig(spool=spool, max_upload_size=size, max_spool=max_spool,
                          overwrite=bool(self["overwrite"]), ftp=ftp,
                          no_filename_reuse=bool(self["no-filename-reuse"]), one_sdist=bool(self["one-sdist"]))


class SpoolService(Service):
    """
    At start, removes what uploads cut short by a crash (kill -9, a power
    cut) left in the upload spool, and says how much was freed: pypid is the
    spool's only writer. The spool itself is made by the first upload in
    flight and removed by the last (L{pypid.store.directory.landing.Spool}).
    """

    log = Logger(namespace="pypid")

    def __init__(self, path: str) -> None:
        self.path = path

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # Twisted's Service is unannotated
        from pypid.store.directory.landing import cleaned_line, clean_spool

        removed, freed = clean_spool(os.path.dirname(self.path))
        if removed:
            self.log.info("{line}", line=cleaned_line(removed, freed, self.path))


def ftp_factory(
    config: FeedConfig, root: str, logins: Logins, publisher: Publisher, reactor: Any, threads: Threads,
    budget: Optional[SpoolBudget] = None,
) -> UploadFTPFactory:
    """
    The FTP upload server's factory for C{--ftp}: files go through
    C{publisher} (L{pypid.feed.publish.Publisher}: the rules of HTTP
    uploads), browsing shows C{root} (the first package directory); logins
    are checked by C{logins} (L{pypid.auth.logins.Logins}, shared with HTTP).
    """
    from pypid.feed.ftp import FTPUploads
    from pypid.feed.ftp import ftp_factory as factory

    uploads = FTPUploads(
        publisher=publisher,
        root=root,
        reactor=reactor,
        threads=threads,
        max_size=config.max_upload_size,
        **({"budget": budget} if budget is not None else {}),
    )
    return factory(uploads, logins)
