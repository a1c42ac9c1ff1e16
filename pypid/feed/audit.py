"""
The audit log: one line per upload, removal or refusal, whichever way it
came (HTTP, FTP, or refused by the Site before its body was read), in the
C{pypid.audit} log namespace and one shape::

    file_upload ok user=alice client=10.0.0.7 project=demo-pkg version=1.0 file=demo_pkg-1.0.tar.gz status=200: demo_pkg-1.0.tar.gz created.

(with C{token=NAME:ID} after the user when the user logged in with an API token).

Made once in C{makeService} and handed to whoever records (the publisher,
the upload resource, the Site): no module-level logger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from twisted.logger import Logger

NAMESPACE = "pypid.audit"


def _shown(text: str, limit: int = 200) -> str:
    """Client-given text as one printable line."""
    return text.encode("unicode_escape").decode("ascii")[:limit]


@dataclass
class AuditEvent:
    """The facts of one audited request, filled in as they become known."""

    #: What was asked: the form's C{:action} (C{file_upload}, C{remove_pkg}),
    #: C{ftp_upload}, or C{upload} for a body refused unread.
    action: str = "-"
    #: C{ok} or C{refused}.
    result: str = "-"
    user: str = "-"
    client: str = "-"
    project: str = "-"
    version: str = "-"
    file: str = "-"
    #: The HTTP status of the answer (for FTP, the one HTTP would have given).
    status: int = 0
    message: str = ""


class AuditLog:
    """Writes L{AuditEvent}s, one line each."""

    def __init__(self, logger: Optional[Logger] = None) -> None:
        self.logger = logger if logger is not None else Logger(namespace=NAMESPACE)

    def record(self, event: AuditEvent) -> None:
        # A user logged in with an API token: the token is named too.
        token = getattr(event.user, "token", None)
        self.logger.info(
            "{action} {result} user={user}{token} client={client} project={project} "
            "version={version} file={file} status={status}: {message}",
            action=_shown(event.action, 60),
            result=event.result,
            user=str(event.user),
            token=f" token={token.shown()}" if token is not None else "",
            client=event.client,
            project=event.project,
            version=event.version,
            file=_shown(event.file),
            status=event.status,
            message=event.message,
        )

    def owner_claimed(self, user: str, project: str) -> None:
        """A first uploader became a project's owner (C{--acl}, C{first-uploader})."""
        self.logger.info("owner {user} recorded as the owner of {project}", user=user, project=project)
