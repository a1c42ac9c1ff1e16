"""
The legacy upload API (what twine, uv, poetry and pdm speak): C{POST} to
C{/}, C{/legacy} or C{/legacy/} with a C{multipart/form-data} body.

The body has already been spooled to a temporary file by the Site (see
L{pypid.web.site}); here it is authenticated and parsed in a thread, its
file part streamed into the store's staging area, and handed to the
L{pypid.feed.publish.Publisher}, which checks and stores it; the answer
goes once the index lists the new file, so publish-then-install works at
once. Every upload, removal and refusal is one line of the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from urllib.parse import parse_qs

from pypid.auth.tokens import refusal_text
from pypid.feed import incoming
from pypid.feed.audit import AuditEvent
from pypid.feed.checks import UploadError, action, bad, check_file_upload, check_removal, declared_by_form
from pypid.feed.multipart import Form
from pypid.feed.publish import INTERNAL, Publisher
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


def reason_phrase(message: str) -> bytes:
    """A status line's reason phrase: one line of ISO-8859-1, not too long."""
    line = " ".join(message.split())[:300]
    return line.encode("latin-1", "replace")


class LegacyUpload(Resource):
    """The upload endpoint. Leaf: accepts C{postpath} C{[]} or C{[b""]}."""

    isLeaf = True
    log = Logger()

    def __init__(self, publisher: Publisher, policy: UploadPolicy, threads: Threads) -> None:
        super().__init__()
        self.publisher = publisher
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
        event = AuditEvent(client=getattr(request.getClientAddress(), "host", "-"))
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def done(result) -> None:
            code, message = result
            if not gone:
                body = self._answer(request, code, message)
                request.write(body)
                request.finish()

        def failed(failure) -> None:
            self.log.failure("upload from {client} failed", failure, client=event.client)
            if event.result == "-":
                self.publisher.refused(event, http.INTERNAL_SERVER_ERROR, INTERNAL)
            done((http.INTERNAL_SERVER_ERROR, INTERNAL))

        self._handle(request, event).addCallbacks(done, failed)
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

    @inlineCallbacks
    def _handle(self, request, event: AuditEvent):
        """The answer (code, message); every outcome is one audit line."""
        received = None
        try:
            event.user = yield self._login(request)
            received = yield self._read(request)
            form = received.form
            query = request.args.get(b":action", [b""])[0].decode("utf-8", "replace")
            event.action = action(form, query)
            if event.action == "file_upload":
                upload = check_file_upload(form)
                content, received = received.content, received._replace(content=None)
                # The publisher takes the staged bytes over, and writes the audit line.
                published = yield self.publisher.publish(
                    event, upload.filename, content, received.signature, declared_by_form(upload))
                result = (http.OK, published.message)
            elif event.action == "remove_pkg":
                name, version = check_removal(form)
                removed = yield self.publisher.remove(event, name, version)
                result = (http.OK, removed.message)
            elif event.action in ("submit", "submit_pkg_info", "verify"):
                result = (http.GONE, GONE_REGISTER)
            elif event.action == "doc_upload":
                result = (http.GONE, GONE_DOCS)
            else:
                shown = event.action.encode("unicode_escape").decode("ascii")[:60]
                raise bad(f"Unsupported ':action' field: {shown}")
        except UploadError as e:
            result = (e.code, e.message)
        finally:
            if received is not None and received.content is not None:
                # Never handed to the publisher: the staged bytes go.
                yield self._thread(received.content.abort)
            content = getattr(request, "content", None)
            if content is not None:
                content.close()
        if event.result == "-":
            # Not the publisher's to record: refused here.
            self.publisher.refused(event, *result)
        return result

    @inlineCallbacks
    def _login(self, request):
        """The user name, or an L{UploadError} (401/403)."""
        policy = self.policy
        if not policy.enabled:
            raise UploadError(http.FORBIDDEN, DISABLED)
        if policy.authenticator is None:
            return "anonymous"
        try:
            user = yield policy.authenticator.authenticate(request)
        except UnauthorizedLogin as e:
            raise UploadError(http.UNAUTHORIZED, refusal_text(e, "Unauthorized: wrong user name or password."))
        if user is None:
            raise UploadError(http.UNAUTHORIZED, NO_CREDENTIALS)
        return user

    def _read(self, request):
        """Parse the body (in a thread): a L{incoming.Received}, the file part staged in the store."""
        content_type = request.getHeader(b"content-type") or b""
        kind = content_type.split(b";", 1)[0].strip().lower()
        if kind == b"multipart/form-data":
            return self._thread(incoming.receive, request.content, content_type, self.publisher.store.stage)
        if kind == b"application/x-www-form-urlencoded":
            return self._thread(_read_urlencoded, request.content)
        raise bad("Expected a multipart/form-data body.")


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
