"""
The legacy upload API (what twine, uv, poetry and pdm speak): C{POST} to
C{/}, C{/legacy} or C{/legacy/} with a C{multipart/form-data} body.

An upload is recognised from its request head (L{LegacyUpload.take_body},
asked by L{pypid.web.site.PypidRequest} before any byte of the body is
read): the path, the method, the content type, and the credentials, checked
while the connection is paused (the password in its own pool). Only then is
the body read, and only an upload by a user with the right to upload is
written anywhere: its file part straight into the store's staging area as
it arrives (L{pypid.feed.incoming.FormReceiver}), within the spool budget
(C{--max-spool}) and the store's room. Every other body is small and kept
in memory (the Site's rule).

The parsed form goes to the L{pypid.feed.publish.Publisher}, which checks
and stores the file; the answer goes once the index lists the new file, so
publish-then-install works at once. Every upload, removal and refusal is
one line of the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import parse_qs

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.logger import Logger
from twisted.web import http

from pypid.auth.tokens import refusal_text
from pypid.feed import incoming
from pypid.feed.audit import AuditEvent
from pypid.feed.checks import (
    UploadError,
    action,
    bad,
    check_file_upload,
    check_removal,
    declared_by_form,
    no_room,
)
from pypid.feed.incoming import FormReceiver, Received, SpoolBudget
from pypid.feed.multipart import Form
from pypid.feed.publish import Publisher
from pypid.store.interfaces import StoreFull
from pypid.threads import Threads
from pypid.web.errors import HTTPError, not_found
from pypid.web.guard import Authenticator
from pypid.web.resource import PlainResource

#: The request targets of uploads.
UPLOAD_PATHS = (b"/", b"/legacy", b"/legacy/")
#: Largest urlencoded body (only the small actions use one); the Site
#: takes no larger body that is not an upload.
MAX_URLENCODED = 64 * 1024

DISABLED = "Forbidden: uploads are disabled on this server (start it with -P/--passwords)."
NO_CREDENTIALS = "Unauthorized: uploads need a user name and password."
WRONG_CREDENTIALS = "Unauthorized: wrong user name or password."

#: twine register (and setup.py register): pypiserver answers 200 and
#: creates nothing; so does pypid (a project exists with its first file).
REGISTERED = "OK: this index needs no registration; nothing was created. Upload the files themselves."
GONE_DOCS = "Uploading documentation is no longer supported by this index."
#: Seconds a client told the spool budget is spent waits before it retries.
BUDGET_RETRY = 10


@dataclass
class UploadPolicy:
    """Who may upload, from the command line."""

    #: False: uploads are refused (a read-only index).
    enabled: bool = True
    #: Checks passwords; None when uploads need none (C{-a} without update).
    authenticator: Optional[Authenticator] = None
    #: The bytes all uploads in flight may hold (C{--max-spool}).
    budget: SpoolBudget = field(default_factory=lambda: SpoolBudget(None))


def media_type(content_type: Optional[bytes]) -> bytes:
    return (content_type or b"").split(b";", 1)[0].strip().lower()


class UploadBody:
    """
    One upload's body on its way in, for the request that receives it: the
    bytes go to a L{FormReceiver}; what it holds of the spool budget is
    given back once, by L{release}.
    """

    def __init__(self, receiver: FormReceiver, user: str, budget: SpoolBudget, reserved: int,
                 declared: Optional[int]) -> None:
        self.receiver = receiver
        self.user = user
        self._budget = budget
        self._reserved = reserved
        #: The declared length (None: chunked, reserved as it arrives).
        self._declared = declared
        self._received = 0

    def feed(self, data: bytes) -> Optional[HTTPError]:
        """Take C{data}; an L{HTTPError} (507) when the spool budget has no room for it."""
        self._received += len(data)
        if self._declared is None and self._received > self._reserved:
            more = self._received - self._reserved
            if not self._budget.reserve(more):
                return spool_full(self._budget)
            self._reserved += more
        self.receiver.feed(data)
        return None

    def finish(self) -> Deferred:
        """The body is whole: L{FormReceiver.finish} (the caller owns what it gives)."""
        return self.receiver.finish()

    def abort(self) -> None:
        """The body will not be whole: throw it away."""
        self.receiver.abort()

    def release(self) -> None:
        reserved, self._reserved = self._reserved, 0
        self._budget.release(reserved)


def spool_full(budget: SpoolBudget) -> HTTPError:
    return HTTPError(
        507,
        budget.refusal(),
        ((b"retry-after", b"%d" % BUDGET_RETRY),),
    )


class LegacyUpload(PlainResource):
    """The upload endpoint. Leaf: accepts C{postpath} C{[]} or C{[b""]}."""

    isLeaf = True
    log = Logger()

    def __init__(self, publisher: Publisher, policy: UploadPolicy, threads: Threads) -> None:
        super().__init__()
        self.publisher = publisher
        self.policy = policy
        self._thread = threads

    # Before the body: is it an upload, and by whom?

    def take_body(self, request, method: bytes, uri: bytes, length: Optional[int]):
        """
        Asked with a request's head, before its body is read: L{None} when
        the request is no upload (its body is the Site's: small, in memory);
        an L{HTTPError} to answer at once (uploads disabled, no
        credentials); else a L{Deferred} firing, once the credentials are
        checked and the store has made room, with the L{UploadBody} the body
        goes to, or failing with the L{HTTPError} to answer.
        """
        if method != b"POST" or uri.split(b"?", 1)[0] not in UPLOAD_PATHS:
            return None
        content_type = request.requestHeaders.getRawHeaders(b"content-type") or [b""]
        if media_type(content_type[0]) != b"multipart/form-data":
            return None
        if not self.policy.enabled:
            return HTTPError(http.FORBIDDEN, DISABLED)
        authenticator = self.policy.authenticator
        if authenticator is not None and not request.requestHeaders.hasHeader(b"authorization"):
            return authenticator.challenge(NO_CREDENTIALS)
        return self._admit(request, content_type[0], length)

    @inlineCallbacks
    def _admit(self, request, content_type: bytes, length: Optional[int]):
        try:
            user = yield self._login(request)
        except UploadError as e:
            raise self._error(e.code, e.message)
        budget = self.policy.budget
        reserved = length or 0
        if not budget.reserve(reserved):
            raise spool_full(budget)
        try:
            staged = yield self._thread(self.publisher.store.stage, length)
        except StoreFull as e:
            budget.release(reserved)
            raise HTTPError(507, str(e))
        except BaseException:
            budget.release(reserved)
            raise
        receiver = FormReceiver(content_type, staged, self._thread, request.pause_body, request.resume_body)
        return UploadBody(receiver, user, budget, reserved, length)

    # The body is here.

    def render_POST(self, request):
        if request.postpath not in ([], [b""]):
            raise not_found()
        event = AuditEvent(client=getattr(request.getClientAddress(), "host", "-"))
        return self._handle(request, event)

    def _ok(self, request, message: str) -> bytes:
        body = (message + "\n").encode("utf-8")
        request.setResponseCode(http.OK, b"OK")
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return body

    def _error(self, code: int, message: str) -> HTTPError:
        """The answer to a refusal: 401s carry the challenge."""
        authenticator = self.policy.authenticator
        if code == http.UNAUTHORIZED and authenticator is not None:
            return authenticator.challenge(message)
        return HTTPError(code, message)

    @inlineCallbacks
    def _handle(self, request, event: AuditEvent):
        """The answer's body, or the L{HTTPError} to answer; every outcome is one audit line."""
        received: Optional[Received] = None
        try:
            event.user = yield self._login(request)
            received = yield self._read(request)
            form = received.form
            query = request.args.get(b":action", [b""])[0].decode("utf-8", "replace")
            event.action = action(form, query)
            if event.action == "file_upload":
                upload = check_file_upload(form)
                content, received = received.content, received._replace(content=None)
                if content is None:
                    raise bad("Upload payload does not have a file.")
                # The publisher takes the staged bytes over, and writes the audit line.
                published = yield self.publisher.publish(
                    event, upload.filename, content, received.signature, declared_by_form(upload))
                answer: tuple[int, str] = (http.OK, published.message)
            elif event.action == "remove_pkg":
                name, version = check_removal(form)
                removed = yield self.publisher.remove(event, name, version)
                answer = (http.OK, removed.message)
            elif event.action in ("submit", "submit_pkg_info", "verify"):
                answer = (http.OK, REGISTERED)
            elif event.action == "doc_upload":
                answer = (http.GONE, GONE_DOCS)
            else:
                shown = event.action.encode("unicode_escape").decode("ascii")[:60]
                raise bad(f"Unsupported ':action' field: {shown}")
        except UploadError as e:
            answer = (e.code, e.message)
        except HTTPError as e:
            # A login refused unchecked (429, 503): its own answer.
            if event.result == "-":
                self.publisher.answered(event, e.code, e.message)
            raise
        except BaseException as e:
            if event.result == "-":
                self.publisher.answered(event, http.INTERNAL_SERVER_ERROR, f"internal error: {e!r}"[:200])
            raise
        finally:
            if received is not None and received.content is not None:
                # Never handed to the publisher: the staged bytes go.
                yield self._thread(received.content.abort)
        if event.result == "-":
            # Not the publisher's to record: decided here.
            self.publisher.answered(event, *answer)
        code, message = answer
        if code != http.OK:
            raise self._error(code, message)
        return self._ok(request, message)

    @inlineCallbacks
    def _login(self, request):
        """
        The user name: known from the request head (L{take_body}), or
        checked now; an L{UploadError} (401, 403), or the authenticator's
        L{HTTPError} (429, 503) for a login refused unchecked.
        """
        policy = self.policy
        if not policy.enabled:
            raise UploadError(http.FORBIDDEN, DISABLED)
        body = getattr(request, "upload_body", None)
        if body is not None:
            return body.user
        if policy.authenticator is None:
            return "anonymous"
        try:
            user = yield policy.authenticator.authenticate(request)
        except HTTPError:
            raise
        except UnauthorizedLogin as e:
            raise UploadError(http.UNAUTHORIZED, refusal_text(e, WRONG_CREDENTIALS))
        if user is None:
            raise UploadError(http.UNAUTHORIZED, NO_CREDENTIALS)
        return user

    def _read(self, request) -> Deferred:
        """
        The parsed form (a L{Received}, its file part staged in the store):
        from the body received as it came, or, when the Site did not stream
        it (a site that is not pypid's), from C{request.content}.
        """
        body = getattr(request, "upload_body", None)
        if body is not None:
            return body.finish()
        content_type = request.getHeader(b"content-type") or b""
        kind = media_type(content_type)
        if kind == b"multipart/form-data":
            def staged(staged) -> Deferred:
                return incoming.receive(request.content, content_type, staged, self._thread)

            def full(failure):
                failure.trap(StoreFull)
                raise no_room(str(failure.value))

            return self._thread(self.publisher.store.stage).addCallbacks(staged, full)
        if kind == b"application/x-www-form-urlencoded":
            return _read_urlencoded(request.content)
        raise bad("Expected a multipart/form-data body.")


def _read_urlencoded(content) -> Deferred:
    content.seek(0)
    raw = content.read(MAX_URLENCODED + 1)
    if len(raw) > MAX_URLENCODED:
        return fail(bad("The form is too large."))
    try:
        fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return fail(bad("The form is not UTF-8."))
    return succeed(Received(Form(fields, {}), None, {}, None))
