"""
The yank API: C{POST /+api/yank} and C{POST /+api/unyank}, with a small
form body (C{application/x-www-form-urlencoded}, as curl's C{-d} and HTML
forms send, or C{multipart/form-data}, as curl's C{-F} does) and the
credentials of uploads (HTTP Basic: a user name and password, or
C{__token__} and an API token). The project page's yank forms post here
too (with C{from=page}: the answer is then a redirect back to the page).

The answer is one line of text, in the body and in the status line:
200 when done (or nothing needed doing), 400 for a malformed request, 401
without valid credentials, 403 when the user may not upload to the
project (or the request comes from another site's page), 404 for an
unknown project, release or file. The rules are L{pypid.feed.yank}'s.
"""

from __future__ import annotations

import io
from typing import Optional
from urllib.parse import parse_qs, quote, urlsplit

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import inlineCallbacks
from twisted.web import http

from pypid.auth.tokens import refusal_text
from pypid.feed.audit import AuditEvent
from pypid.feed.checks import UploadError
from pypid.feed.multipart import Limits, MultipartError, boundary_of, read_form
from pypid.feed.yank import UNYANK, YANK, Yanker, yank_request
from pypid.threads import Threads
from pypid.web.errors import HTTPError, NotAnUpload
from pypid.web.resource import PlainResource
from pypid.web.util import base_url, redirect

#: Largest request body: a few fields.
MAX_BODY = 64 * 1024

DISABLED = "Forbidden: this index takes no uploads, so nothing can be yanked (start it with -P/--passwords)."
NO_CREDENTIALS = "Unauthorized: yanking needs the user name and password of an uploader."
WRONG = "Unauthorized: wrong user name or password."
CROSS_SITE = "Forbidden: a yank must come from this index's own pages or a client such as curl, not another site."


class _NoFile:
    def write(self, data: bytes) -> None:
        raise MultipartError("the yank API takes no file parts")


def read_fields(content, content_type: bytes) -> dict[str, list[str]]:
    """
    The form fields of a small body (blocking: in a thread).

    @raise UploadError: 400 or 413.
    """
    content.seek(0)
    raw = content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise UploadError(http.REQUEST_ENTITY_TOO_LARGE, f"Request Entity Too Large: at most {MAX_BODY} bytes.")
    kind = content_type.split(b";", 1)[0].strip().lower()
    if kind == b"application/x-www-form-urlencoded":
        try:
            return parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
        except (UnicodeDecodeError, ValueError):
            raise UploadError(http.BAD_REQUEST, "Bad Request: the form is not UTF-8 url-encoded fields.")
    if kind == b"multipart/form-data":
        try:
            form = read_form(io.BytesIO(raw).read, boundary_of(content_type), lambda headers: _NoFile(),
                             Limits(parts=200, text_bytes=MAX_BODY))
        except MultipartError as e:
            raise UploadError(http.BAD_REQUEST, f"Bad Request: {e}.")
        return form.fields
    raise UploadError(
        http.UNSUPPORTED_MEDIA_TYPE,
        "Unsupported Media Type: send form fields (application/x-www-form-urlencoded or multipart/form-data).",
    )


def cross_site(request) -> bool:
    """
    Whether a browser says the request comes from another site's page
    (C{Origin} or C{Sec-Fetch-Site}): a form there must not use the
    credentials the browser remembers for this index.
    """
    site = (request.getHeader(b"sec-fetch-site") or b"").strip().lower()
    if site and site not in (b"same-origin", b"none"):
        return True
    origin = request.getHeader(b"origin")
    if origin is None:
        return False
    ours = urlsplit(base_url(request))
    theirs = urlsplit(origin.decode("latin-1").strip())
    return (theirs.scheme, theirs.netloc.lower()) != (ours.scheme, ours.netloc.lower())


class YankAPI(PlainResource):
    """C{/+api/}: C{yank} and C{unyank}, by C{POST}."""

    isLeaf = True

    def __init__(self, yanker: Yanker, policy, threads: Threads) -> None:
        """
        @param policy: the uploads' L{pypid.web.upload.UploadPolicy}: who may
            log in, and whether uploads (so yanks) are on at all.
        """
        super().__init__()
        self.yanker = yanker
        self.policy = policy
        self._thread = threads

    def take_body(self, request, method: bytes, uri: bytes, length: Optional[int]):
        """
        Before the body is read (see L{pypid.web.site.PypidSite.take_body}):
        a body this API would never read (over L{MAX_BODY}, or of no
        announced length) and a request without the credentials it needs
        are answered at once (a L{NotAnUpload}), so they never reach the
        disk (the access log says so; they are no uploads). L{None}: the
        body is the Site's, small and in memory.
        """
        if method != b"POST" or not uri.split(b"?", 1)[0].startswith(b"/+api/"):
            return None
        if length is None:
            return NotAnUpload(http.LENGTH_REQUIRED, "Length Required: send the form with a Content-Length.")
        if length > MAX_BODY:
            return NotAnUpload(http.REQUEST_ENTITY_TOO_LARGE, f"Request Entity Too Large: at most {MAX_BODY} bytes.")
        if not self.policy.enabled:
            return NotAnUpload(http.FORBIDDEN, DISABLED)
        authenticator = self.policy.authenticator
        if authenticator is not None and not request.requestHeaders.hasHeader(b"authorization"):
            challenge = b'Basic realm="' + authenticator.realm + b'", charset="UTF-8"'
            return NotAnUpload(http.UNAUTHORIZED, NO_CREDENTIALS, ((b"WWW-Authenticate", challenge),))
        return None

    def render_POST(self, request):
        if request.postpath not in ([b"yank"], [b"unyank"]):
            raise HTTPError(http.NOT_FOUND, "Not Found: the API has /+api/yank and /+api/unyank.")
        action = YANK if request.postpath == [b"yank"] else UNYANK
        return self._handle(request, action)

    @inlineCallbacks
    def _handle(self, request, action: str):
        event = AuditEvent(action=action, client=getattr(request.getClientAddress(), "host", "-"))
        try:
            if cross_site(request):
                raise UploadError(http.FORBIDDEN, CROSS_SITE)
            event.user = yield self._login(request)
            fields = yield self._thread(read_fields, request.content, request.getHeader(b"content-type") or b"")
            wanted = yank_request(action, fields)
        except UploadError as e:
            event.result, event.status, event.message = "refused", e.code, e.message
            self.yanker.audit.record(event)
            raise self._error(e)
        try:
            done = yield self.yanker.request(event, wanted)
        except UploadError as e:
            raise self._error(e)
        if fields.get("from") == ["page"]:
            anchor = quote(event.version, safe="") if event.version != "-" else ""
            return redirect(request, f"../project/{wanted.project}/" + (f"#v{anchor}" if anchor else ""),
                            http.SEE_OTHER)
        body = (done.message + "\n").encode("utf-8")
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"content-length", b"%d" % len(body))
        request.setHeader(b"cache-control", b"no-store")
        return body

    def _error(self, e: UploadError) -> HTTPError:
        headers: tuple[tuple[bytes, bytes], ...] = ()
        authenticator = self.policy.authenticator
        if e.code == http.UNAUTHORIZED and authenticator is not None:
            headers = ((b"www-authenticate", b'Basic realm="' + authenticator.realm + b'", charset="UTF-8"'),)
        return HTTPError(e.code, e.message, headers)

    @inlineCallbacks
    def _login(self, request):
        """The user name, or L{UploadError} (401/403); 429 and 503 pass as L{HTTPError}."""
        policy = self.policy
        if not policy.enabled:
            raise UploadError(http.FORBIDDEN, DISABLED)
        if policy.authenticator is None:
            return "anonymous"
        try:
            user: Optional[str] = yield policy.authenticator.authenticate(request)
        except HTTPError:
            raise
        except UnauthorizedLogin as e:
            raise UploadError(http.UNAUTHORIZED, refusal_text(e, WRONG))
        if user is None:
            raise UploadError(http.UNAUTHORIZED, NO_CREDENTIALS)
        return user

