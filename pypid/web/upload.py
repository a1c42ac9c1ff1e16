"""
The legacy upload API (what twine, uv, poetry and pdm speak): C{POST} to
C{/}, C{/legacy} or C{/legacy/} with a C{multipart/form-data} body.

The body has already been spooled to a temporary file by the Site (see
L{pypid.web.site}); here it is authenticated, parsed and checked in
threads, landed by an atomic rename, and answered only once the index
lists the new file, so publish-then-install works at once. Every upload,
removal and refusal is one line of the audit log.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import inlineCallbacks, returnValue
from twisted.logger import Logger
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from urllib.parse import parse_qs

from pypid.feed import incoming
from pypid.feed.audit import AuditEvent, AuditLog
from pypid.store.directory import landing
from pypid.ops.metrics import UPLOAD_BYTES, UPLOADS
from pypid.auth.acl import AclFile
from pypid.store.interfaces import IPackageStore
from pypid.feed.multipart import Form
from pypid.index.names import normalize
from pypid.feed.checks import (
    UploadError,
    action,
    bad,
    check_archive,
    check_digests,
    check_file_upload,
    check_removal,
)
from pypid.threads import Threads
from pypid.web.guard import Authenticator

#: Largest urlencoded body (only the small actions use one).
MAX_URLENCODED = 1024 * 1024

DISABLED = "Forbidden: uploads are disabled on this server (start it with -P/--passwords)."
NO_CREDENTIALS = "Unauthorized: uploads need a user name and password."
FORM_TYPES = (b"multipart/form-data", b"application/x-www-form-urlencoded")

GONE_REGISTER = "Project pre-registration is no longer required or supported, upload your files instead."
GONE_DOCS = "Uploading documentation is no longer supported by this index."


@dataclass
class UploadPolicy:
    """Who may upload, from the command line."""

    #: False: uploads are refused (a read-only index).
    enabled: bool = True
    #: Checks passwords; None when uploads need none (C{-a} without update).
    authenticator: Optional[Authenticator] = None
    #: Per-project rights (needs an authenticator).
    acl: Optional[AclFile] = None
    #: Whether an upload may replace a file with other content.
    overwrite: bool = False


def reason_phrase(message: str) -> bytes:
    """A status line's reason phrase: one line of ISO-8859-1, not too long."""
    line = " ".join(message.split())[:300]
    return line.encode("latin-1", "replace")


class _Audit:
    """The facts of one request for its audit line."""

    def __init__(self, request) -> None:
        client = request.getClientAddress()
        self.client = getattr(client, "host", "-")
        self.user = "-"
        self.action = "-"
        self.project = "-"
        self.version = "-"
        self.filename = "-"
        #: Bytes stored, for the metrics.
        self.stored = 0


class LegacyUpload(Resource):
    """The upload endpoint. Leaf: accepts C{postpath} C{[]} or C{[b""]}."""

    isLeaf = True
    log = Logger()

    def __init__(self, store: IPackageStore, root: str, spool: str, policy: UploadPolicy,
                 threads: Threads, audit: AuditLog) -> None:
        super().__init__()
        self.audit = audit
        self.store = store
        self.root = root
        self.spool = spool
        self.policy = policy
        self._thread = threads

    def early_answer(self, method: bytes, uri: bytes, headers):
        """
        Called with the request line and headers, before the body is read:
        an upload (a form POST to an upload URL) that lacks the credentials
        it needs is answered at once, so anonymous bodies never reach the
        disk. None lets the request go on.
        """
        if method != b"POST" or uri.split(b"?", 1)[0] not in (b"/", b"/legacy", b"/legacy/"):
            return None
        content_type = (headers.getRawHeaders(b"content-type") or [b""])[0]
        if content_type.split(b";", 1)[0].strip().lower() not in FORM_TYPES:
            return None
        if not self.policy.enabled:
            return (http.FORBIDDEN, DISABLED, ())
        authenticator = self.policy.authenticator
        if authenticator is not None and not headers.hasHeader(b"authorization"):
            challenge = b'Basic realm="' + authenticator.realm + b'", charset="UTF-8"'
            return (http.UNAUTHORIZED, NO_CREDENTIALS, ((b"WWW-Authenticate", challenge),))
        return None

    def render_POST(self, request):
        if request.postpath not in ([], [b""]):
            return self._answer(request, 404, "Not Found")
        facts = _Audit(request)
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def done(result) -> None:
            code, message = result
            self._log(facts, code, message)
            if not gone:
                body = self._answer(request, code, message)
                request.write(body)
                request.finish()

        def failed(failure) -> None:
            self.log.failure("upload from {client} failed", failure, client=facts.client)
            done((500, "Internal error while storing the upload; see the server log."))

        self._handle(request, facts).addCallbacks(done, failed)
        return NOT_DONE_YET

    def _answer(self, request, code: int, message: str) -> bytes:
        body = (message + "\n").encode("utf-8")
        if code == http.UNAUTHORIZED and self.policy.authenticator is not None:
            realm = self.policy.authenticator.realm
            request.setHeader(b"www-authenticate", b'Basic realm="' + realm + b'", charset="UTF-8"')
        request.setResponseCode(code, reason_phrase(message) if code != 200 else b"OK")
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"content-length", b"%d" % len(body))
        request.setHeader(b"cache-control", b"no-store")
        return body

    def _log(self, facts: _Audit, code: int, message: str) -> None:
        if facts.action in ("file_upload", "-"):
            UPLOADS.inc(result=_metric_result(code, message))
            if facts.stored:
                UPLOAD_BYTES.inc(facts.stored)
        self.audit.record(AuditEvent(
            facts.action, "ok" if code == 200 else "refused", facts.user, facts.client,
            facts.project, facts.version, facts.filename, code, message))

    @inlineCallbacks
    def _handle(self, request, facts: _Audit):
        received = None
        try:
            facts.user = yield self._login(request)
            received = yield self._read(request)
            form = received.form if received is not None else None
            query = request.args.get(b":action", [b""])[0].decode("utf-8", "replace")
            facts.action = action(form, query)
            if facts.action == "file_upload":
                result = yield self._file_upload(received, facts)
            elif facts.action == "remove_pkg":
                result = yield self._remove(form, facts)
            elif facts.action in ("submit", "submit_pkg_info", "verify"):
                result = (http.GONE, GONE_REGISTER)
            elif facts.action == "doc_upload":
                result = (http.GONE, GONE_DOCS)
            else:
                shown = facts.action.encode("unicode_escape").decode("ascii")[:60]
                raise bad(f"Unsupported ':action' field: {shown}")
        except UploadError as e:
            result = (e.code, e.message)
        finally:
            if received is not None and received.content is not None:
                # Landed (and unlinked) or refused: the temporary file goes.
                yield self._thread(_discard, received.content)
            content = getattr(request, "content", None)
            if content is not None:
                content.close()
        returnValue(result)

    @inlineCallbacks
    def _login(self, request):
        """The user name, or an L{UploadError} (401/403)."""
        policy = self.policy
        if not policy.enabled:
            raise UploadError(http.FORBIDDEN, DISABLED)
        if policy.authenticator is None:
            returnValue("anonymous")
        try:
            user = yield policy.authenticator.authenticate(request)
        except UnauthorizedLogin:
            raise UploadError(http.UNAUTHORIZED, "Unauthorized: wrong user name or password.")
        if user is None:
            raise UploadError(http.UNAUTHORIZED, NO_CREDENTIALS)
        returnValue(user)

    def _read(self, request):
        """Parse the body (in a thread): a L{incoming.Received}."""
        content_type = request.getHeader(b"content-type") or b""
        kind = content_type.split(b";", 1)[0].strip().lower()
        if kind == b"multipart/form-data":
            return self._thread(incoming.receive, request.content, content_type, self.spool)
        if kind == b"application/x-www-form-urlencoded":
            return self._thread(_read_urlencoded, request.content)
        raise bad("Expected a multipart/form-data body.")

    @inlineCallbacks
    def _authorize(self, user: str, project: str, facts: _Audit):
        acl = self.policy.acl
        if acl is None:
            return
        yield self.store.whenReady()
        exists = self.store.snapshot.get(project) is not None
        decision = yield self._thread(acl.authorize, user, project, exists)
        if not decision.allowed:
            raise UploadError(http.FORBIDDEN, f"Forbidden: {user} may not upload to {project} ({decision.reason}).")
        if decision.claimed:
            self.audit.owner_claimed(user, project)

    @inlineCallbacks
    def _file_upload(self, received, facts: _Audit):
        upload = check_file_upload(received.form)
        facts.project, facts.version, facts.filename = upload.project, str(upload.version), upload.filename
        yield self._authorize(facts.user, upload.project, facts)
        check_digests(upload.digests, received.digests)
        content = received.content
        yield self._thread(check_archive, content.path, upload, content.size)
        yield self.store.whenReady()
        target = os.path.join(self.root, upload.filename)
        project = self.store.snapshot.get(upload.project)
        for distfile in project.files if project is not None else ():
            if distfile.filename == upload.filename:
                target = self._disk_path(distfile) or target
                break
        placed = yield self._thread(
            landing.place, content.path, received.digests["sha256"], target, self.policy.overwrite
        )
        changed = [placed.path]
        if placed.outcome != "identical":
            facts.stored = content.size
        if received.signature is not None and placed.outcome != "identical":
            signature = yield self._thread(landing.write_signature, placed.path, received.signature)
            changed.append(signature)
        yield self.store.refresh(changed)
        if placed.outcome == "identical":
            returnValue((http.OK, f"{upload.filename} is already stored with the same content."))
        returnValue((http.OK, f"{upload.filename} {placed.outcome}."))

    @inlineCallbacks
    def _remove(self, form: Optional[Form], facts: _Audit):
        if form is None:
            raise bad("Missing 'name'/'version' fields.")
        name, version = check_removal(form)
        project = normalize(name)
        facts.project, facts.version = project, str(version)
        yield self._authorize(facts.user, project, facts)
        yield self.store.whenReady()
        listed = self.store.snapshot.get(project)
        files = [f for f in (listed.files if listed is not None else ()) if f.version == version]
        paths = [p for p in (self._disk_path(f) for f in files) if p is not None]
        if not paths:
            raise UploadError(http.NOT_FOUND, f"{name} ({version}) not found")
        facts.filename = ",".join(f.filename for f in files)
        removed = yield self._thread(landing.remove, paths)
        yield self.store.refresh(removed or paths)
        returnValue((http.OK, f"Removed {len(files)} files of {name} {version}."))

    def _disk_path(self, distfile) -> Optional[str]:
        """Where a listed file is on disk (the link itself for a symlink)."""
        roots = self.store.roots
        return os.path.join(roots[distfile.root], *distfile.path.split("/"))


def _metric_result(code: int, message: str) -> str:
    if code == 200:
        return "stored"
    if code == 400:
        return "exists" if message.startswith("File already exists") else "invalid"
    return {401: "unauthorized", 403: "forbidden", 404: "not_found", 410: "gone",
            413: "too_large"}.get(code, "error")


def _discard(writer) -> None:
    writer.discard()


def _read_urlencoded(content) -> "incoming.Received":
    content.seek(0)
    raw = content.read(MAX_URLENCODED + 1)
    if len(raw) > MAX_URLENCODED:
        raise bad("The form is too large.")
    try:
        fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise bad("The form is not UTF-8.")
    return incoming.Received(Form(fields, {}), None, {}, None)
