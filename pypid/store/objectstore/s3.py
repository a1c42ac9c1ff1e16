"""
A small S3 client for the object-store backend.

Requests are signed by botocore (Signature V4) and carried by treq, so no
store call blocks the reactor: uploads stream from a file, downloads stream
into a consumer with flow control (the HTTP connection is paused while the
consumer is), and nothing holds a whole object in memory.

Credentials come from botocore's standard chain (environment, shared
credentials file, config file, container or instance role). Resolving them
may read files and ask an instance metadata service, so it runs once in a
thread (L{S3Client.connect}); requests are then signed on the reactor
thread with a frozen copy, which a thread refreshes in the background when
the credentials expire (instance roles). Credentials are never logged, nor
put in an error message: errors name where they came from (C{env},
C{shared-credentials-file}, C{iam-role}, ...).

Threads: everything here is called on the reactor thread and returns
L{Deferred}s, except L{_resolve}, which runs in a thread.

Where an object lives: C{--store s3://BUCKET/PREFIX}, C{--s3-endpoint URL}
(absent: AWS, virtual-hosted addresses), C{--s3-region} (absent: the
region botocore's configuration names, else C{us-east-1}); see
L{S3Location.from_options}. Keys given to the client are relative to the
prefix.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import re
import time
from dataclasses import dataclass, replace
from email.utils import parsedate_tz, mktime_tz
from typing import Any, Callable, NoReturn, Optional, ParamSpec, TypeVar, cast
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree

from twisted.internet import defer, error as ierror
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    FileBodyProducer,
    HTTPConnectionPool,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse
from zope.interface import implementer

from pypid.threads import Threads

_P = ParamSpec("_P")
_T = TypeVar("_T")

log = Logger()

#: Default seconds a presigned URL is valid: long enough for a client to
#: follow a redirect, short enough that a leaked URL is soon useless.
PRESIGN_SECONDS = 300
#: Longest presigned validity SigV4 allows (7 days).
PRESIGN_MAX_SECONDS = 7 * 24 * 3600
#: Most bytes of an error or listing body read into memory.
_BODY_LIMIT = 4 * 1024 * 1024
_ERROR_LIMIT = 64 * 1024
#: An upload may take this long per byte beyond the request timeout
#: (a floor of 256 KiB/s), so a stalled one is given up.
_UPLOAD_SECONDS_PER_BYTE = 1 / (256 * 1024)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z0-9-]{1,64}$")


class S3Error(Exception):
    """
    A request to the object store failed. C{str(error)} is one line fit for
    a log or an HTTP reason; C{code} is the S3 error code (C{NoSuchBucket},
    ...) or a local one (C{Unreachable}, C{NoCredentials}, ...); C{status}
    the HTTP status when there was an answer.
    """

    def __init__(self, line: str, code: str = "", status: Optional[int] = None) -> None:
        super().__init__(line)
        self.code = code
        self.status = status


class ObjectNotFound(S3Error):
    """The object (or the bucket) is not there."""


class RangeNotSatisfiable(S3Error):
    """The byte range asked for lies beyond the object; C{size} is its length when known."""

    def __init__(self, line: str, size: Optional[int]) -> None:
        super().__init__(line, "InvalidRange", 416)
        self.size = size


class StoreUnreachable(S3Error):
    """No answer: connection refused, host unknown, timeout, TLS failure."""


class TransferInterrupted(S3Error):
    """A download stopped before its end (the store or the consumer went away)."""


class S3ConfigError(ValueError):
    """A C{--store}/C{--s3-endpoint}/C{--s3-region} value is unusable; C{str()} says why, in one line."""


@dataclass(frozen=True)
class S3Location:
    """Where objects live: a bucket and a key prefix at an endpoint."""

    bucket: str
    #: C{""} or a prefix ending with C{/}.
    prefix: str
    #: C{scheme://host[:port]}, no path.
    endpoint: str
    #: L{None} until resolved (see L{S3Client.connect}).
    region: Optional[str]
    #: C{endpoint/bucket/key} rather than C{bucket.endpoint/key}.
    path_style: bool

    @classmethod
    def from_options(cls, store: str, endpoint: Optional[str] = None, region: Optional[str] = None) -> "S3Location":
        """
        Read C{--store s3://BUCKET[/PREFIX]}, C{--s3-endpoint URL} and
        C{--s3-region}. Without an endpoint the store is AWS S3, addressed
        virtual-hosted style (path style for bucket names with dots); with
        one, path style, which every S3-compatible server understands.
        Pure: raises L{S3ConfigError} with one line.
        """
        parts = urlsplit(store)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise S3ConfigError(f"--store must look like s3://BUCKET/PREFIX, not {store!r}")
        bucket = parts.netloc
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise S3ConfigError(
                f"{bucket!r} is not a valid bucket name (3-63 lower-case letters, digits, '.' and '-')"
            )
        prefix = parts.path.strip("/")
        if prefix:
            prefix += "/"
        if region is not None and not _REGION.match(region):
            raise S3ConfigError(f"--s3-region {region!r} is not a region name")
        if endpoint is None:
            path_style = "." in bucket
            url = None
        else:
            split = urlsplit(endpoint)
            if split.scheme not in ("http", "https") or not split.hostname or split.path not in ("", "/") or \
                    split.query or split.fragment or split.username or split.password:
                raise S3ConfigError(
                    f"--s3-endpoint must be an http:// or https:// URL of a host (and port), not {endpoint!r}"
                )
            try:
                split.port
            except ValueError:
                raise S3ConfigError(f"--s3-endpoint {endpoint!r} has an invalid port") from None
            url = f"{split.scheme}://{split.netloc}"
            path_style = True
            region = region or "us-east-1"
        location = cls(bucket, prefix, url or "", region, path_style)
        return location if url else location.for_aws(region)

    def for_aws(self, region: Optional[str]) -> "S3Location":
        """This AWS location in C{region} (the endpoint follows the region)."""
        if region is None:
            return replace(self, region=None, endpoint="")
        host = f"s3.{region}.amazonaws.com"
        return replace(self, region=region, endpoint=f"https://{host}")

    def _base(self) -> str:
        if self.path_style:
            return f"{self.endpoint}/{self.bucket}"
        scheme, host = self.endpoint.split("://", 1)
        return f"{scheme}://{self.bucket}.{host}"

    def object_url(self, key: str) -> str:
        """The URL of the object C{key} (relative to the prefix), percent-encoded as SigV4 wants."""
        return f"{self._base()}/{quote(self.prefix + key, safe='/~')}"

    def bucket_url(self, query: list[tuple[str, str]]) -> str:
        """The bucket's URL with C{query}, every name and value percent-encoded."""
        encoded = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in query)
        return f"{self._base()}/" + (f"?{encoded}" if encoded else "")

    def describe(self) -> str:
        """C{s3://bucket/prefix at endpoint}, for messages."""
        return f"s3://{self.bucket}/{self.prefix} at {self.endpoint}"


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD, a GET or a listing says of an object."""

    #: Relative to the location's prefix.
    key: str
    size: int
    #: As the store gives it, quotes removed.
    etag: str
    #: Seconds since the epoch.
    last_modified: float
    content_type: Optional[str] = None


@dataclass(frozen=True)
class ListPage:
    """One page of a listing: objects in key order, and the token of the next page."""

    objects: tuple[ObjectInfo, ...]
    next_token: Optional[str]


class CredentialSource:
    """
    Signing credentials for the reactor thread: a frozen copy of botocore's
    credentials, refreshed in a thread (at most every C{refresh_every}
    seconds, and only for credentials that expire) so that signing never
    waits for an instance metadata service.
    """

    def __init__(self, credentials: Any, frozen: Any, clock: Any, run_in_thread: Threads,
                 refresh_every: float = 60.0) -> None:
        from botocore.credentials import RefreshableCredentials

        self._credentials = credentials
        self._frozen = frozen
        self._clock = clock
        self._run_in_thread = run_in_thread
        self._refresh_every = refresh_every
        self._refreshable = isinstance(credentials, RefreshableCredentials)
        self._at = clock.seconds()
        self._refreshing = False
        #: Where botocore found them (C{env}, C{shared-credentials-file}, C{iam-role}, ...).
        self.method: str = getattr(credentials, "method", None) or "unknown"

    def frozen(self) -> Any:
        """The current read-only credentials (access key, secret, token). Reactor thread."""
        if self._refreshable and not self._refreshing and self._clock.seconds() - self._at >= self._refresh_every:
            self._refreshing = True
            d = self._run_in_thread(self._credentials.get_frozen_credentials)
            d.addCallbacks(self._refreshed, self._refresh_failed)
        return self._frozen

    def _refreshed(self, frozen: Any) -> None:
        self._frozen = frozen
        self._at = self._clock.seconds()
        self._refreshing = False

    def _refresh_failed(self, failure: Failure) -> None:
        self._refreshing = False
        self._at = self._clock.seconds()
        log.warn("S3 credentials (from {method}) could not be refreshed: {why}",
                 method=self.method, why=failure.getErrorMessage())


def _resolve(region: Optional[str]) -> tuple[Any, Any, Optional[str]]:
    """
    Resolve credentials through botocore's chain, and the region from its
    configuration when not given. Blocking (files, instance metadata):
    runs in a thread.
    """
    import botocore.session

    session = botocore.session.Session()
    credentials = session.get_credentials()
    frozen = credentials.get_frozen_credentials() if credentials is not None else None
    if region is None:
        region = session.get_config_variable("region")
    return credentials, frozen, region


def _signer_class() -> Callable[..., Any]:
    from botocore.auth import S3SigV4Auth

    class _Signer(S3SigV4Auth):  # type: ignore[misc]  # botocore has no type information
        # S3's SigV4 (no path normalisation), with the payload's sha256
        # given by the caller when the body streams from a file, so that
        # botocore does not read the file on the reactor thread.
        def payload(self, request: Any) -> Any:
            known = request.context.get("pypid_payload_sha256")
            return known if known is not None else super().payload(request)

    return _Signer


def _http_date(value: Optional[bytes]) -> float:
    if not value:
        return 0.0
    parsed = parsedate_tz(value.decode("latin-1"))
    return float(mktime_tz(parsed)) if parsed else 0.0


def _iso_date(text: Optional[str]) -> float:
    if not text:
        return 0.0
    try:
        return float(calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return 0.0


def _header(response: Any, name: bytes) -> Optional[bytes]:
    values = response.headers.getRawHeaders(name)
    return values[0] if values else None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(element: ElementTree.Element, name: str) -> Optional[str]:
    for child in element:
        if _local(child.tag) == name:
            return child.text or ""
    return None


def _parse_xml(body: bytes) -> Optional[ElementTree.Element]:
    try:
        return ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return None


def _not_s3(location: S3Location, status: int, content_type: Optional[bytes]) -> S3Error:
    kind = (content_type or b"no content type").decode("latin-1")
    return S3Error(
        f"{location.endpoint} answered HTTP {status} ({kind}), not like an S3 store: check --s3-endpoint",
        "NotS3", status,
    )


def error_for(location: S3Location, origin_method: str, status: int, header: Callable[[bytes], Optional[bytes]],
              body: bytes, key: Optional[str] = None) -> S3Error:
    """
    The L{S3Error} for a non-2xx answer (C{status}, its headers through
    C{header(name)}, its C{body}), in one line; credentials are never
    named, only where they came from (C{origin_method}).
    """
    root = _parse_xml(body) if body else None
    code = message = ""
    if root is not None and _local(root.tag) == "Error":
        code = _child_text(root, "Code") or ""
        message = _child_text(root, "Message") or ""
    loc = location
    origin = f"credentials from {origin_method}"
    if not code and body:
        # S3 answers every error with an XML body, but to HEAD.
        return _not_s3(location, status, header(b"content-type"))
    if code == "NoSuchBucket" or (not code and status == 404 and key is None):
        return ObjectNotFound(f"bucket {loc.bucket!r} does not exist at {loc.endpoint}", "NoSuchBucket", status)
    if code == "NoSuchKey" or (not code and status == 404):
        return ObjectNotFound(f"no object {key!r} in {loc.describe()}", "NoSuchKey", status)
    if code == "InvalidAccessKeyId":
        return S3Error(f"{loc.endpoint} does not know the access key ({origin})", code, status)
    if code == "SignatureDoesNotMatch":
        return S3Error(f"the secret key does not match the access key at {loc.endpoint} ({origin})",
                       code, status)
    if code == "AccessDenied" or (not code and status == 403):
        return S3Error(f"access denied to bucket {loc.bucket!r} at {loc.endpoint} ({origin})",
                       code or "AccessDenied", status)
    if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException") \
            or (not code and status == 301):
        region = header(b"x-amz-bucket-region")
        if region is None and root is not None:
            region_text = _child_text(root, "Region")
            region = region_text.encode() if region_text else None
        hint = f": use --s3-region {region.decode()}" if region else ": check --s3-region"
        return S3Error(f"bucket {loc.bucket!r} is not in region {loc.region}{hint}", code or "WrongRegion", status)
    if code:
        text = " ".join(message.split())[:200]
        return S3Error(f"object store error {code} (HTTP {status}) for {loc.describe()}: {text}", code, status)
    return _not_s3(location, status, header(b"content-type"))


class _Collect(Protocol):
    """Collects a response body up to C{limit} bytes; beyond, drops the connection."""

    def __init__(self, finished: defer.Deferred[bytes], limit: int) -> None:
        self.finished = finished
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.too_big = False

    def dataReceived(self, data: bytes) -> None:
        if self.too_big:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.too_big = True
            self.chunks = []
            _producer(self).stopProducing()
            return
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.too_big:
            self.finished.errback(S3Error(f"the object store's answer is over {self.limit} bytes", "TooLarge"))
        elif reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self.chunks))
        else:
            self.finished.errback(reason)


def _producer(protocol: Protocol) -> IPushProducer:
    """The transport of a response body's protocol: a push producer (Twisted's contract)."""
    return cast(IPushProducer, protocol.transport)


def _read_body(response: Any, limit: int) -> defer.Deferred[bytes]:
    finished: defer.Deferred[bytes] = defer.Deferred()
    response.deliverBody(_Collect(finished, limit))
    return finished


class _Discard(Protocol):
    """Drops a response body unread, closing its connection."""

    def connectionMade(self) -> None:
        _producer(self).stopProducing()


@implementer(IPushProducer)
class _BodyToConsumer(Protocol):
    """
    Writes a response body into an L{IConsumer}, as its push producer: when
    the consumer pauses, the HTTP connection stops being read, so a slow
    client holds back the store rather than filling memory.
    """

    def __init__(self, consumer: Any, expected: Optional[int], finished: defer.Deferred[int], what: str) -> None:
        self.consumer = consumer
        self.expected = expected
        self.finished = finished
        self.what = what
        self.received = 0

    def connectionMade(self) -> None:
        self.consumer.registerProducer(self, True)

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        self.consumer.write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.consumer.unregisterProducer()
        complete = self.expected is None or self.received == self.expected
        if reason.check(ResponseDone) and complete or reason.check(PotentialDataLoss) and self.expected is None:
            self.finished.callback(self.received)
            return
        total = "?" if self.expected is None else str(self.expected)
        self.finished.errback(TransferInterrupted(
            f"download of {self.what} stopped after {self.received} of {total} bytes: {reason.getErrorMessage()}",
            "Interrupted",
        ))

    def pauseProducing(self) -> None:
        _producer(self).pauseProducing()

    def resumeProducing(self) -> None:
        _producer(self).resumeProducing()

    def stopProducing(self) -> None:
        _producer(self).stopProducing()


class ObjectBody:
    """
    An object's answer, headers read, body not yet: L{info} (whole object),
    C{length} (bytes in this body), C{content_range} (C{(first, last, size)}
    for a range). Either L{deliver} it or L{discard} it.
    """

    def __init__(self, response: Any, info: ObjectInfo, length: Optional[int],
                 content_range: Optional[tuple[int, int, int]]) -> None:
        self._response = response
        self.info = info
        self.length = length
        self.content_range = content_range
        self._used = False

    def deliver(self, consumer: Any) -> defer.Deferred[int]:
        """
        Stream the body into C{consumer} (an L{IConsumer}; this registers as
        its streaming producer and unregisters at the end). Fires with the
        number of bytes written, or fails with L{TransferInterrupted}.
        """
        if self._used:
            raise RuntimeError("an object body is delivered once")
        self._used = True
        finished: defer.Deferred[int] = defer.Deferred()
        self._response.deliverBody(_BodyToConsumer(consumer, self.length, finished, repr(self.info.key)))
        return finished

    def discard(self) -> None:
        """Drop the body unread (closes its connection)."""
        if not self._used:
            self._used = True
            self._response.deliverBody(_Discard())


def _content_range(value: Optional[bytes]) -> Optional[tuple[Optional[int], Optional[int], Optional[int]]]:
    # "bytes 0-9/100" or "bytes */100"
    if not value:
        return None
    match = re.match(rb"^bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)$", value.strip())
    if match is None:
        return None
    first, last, size = match.groups()
    return (
        int(first) if first is not None else None,
        int(last) if last is not None else None,
        int(size) if size not in (None, b"*") else None,
    )


class S3Client:
    """
    The object store's operations. Build with L{connect}; every method is
    called on the reactor thread.
    """

    def __init__(self, location: S3Location, credentials: CredentialSource, *, reactor: Any,
                 http: Any = None, run_in_thread: Optional[Threads] = None,
                 timeout: float = 30.0, connect_timeout: float = 10.0) -> None:
        from treq.client import HTTPClient

        if location.region is None:
            raise ValueError("the location's region must be resolved")
        self.location = location
        self.credentials = credentials
        self._reactor = reactor
        self._run_in_thread = run_in_thread or _default_threads(reactor)
        self.timeout = timeout
        self._signer = _signer_class()
        if http is None:
            self._pool: Optional[HTTPConnectionPool] = HTTPConnectionPool(reactor, persistent=True)
            self._pool.maxPersistentPerHost = 16
            # Shorter than any store's idle timeout, so a kept connection
            # is never one the store is closing.
            self._pool.cachedConnectionTimeout = 5
            # No log line for every connection to the store.
            self._pool._factory = type(  # type: ignore[assignment]  # a subclass, made here
                "QuietHTTP11ClientFactory", (self._pool._factory,), {"noisy": False})
            http = HTTPClient(Agent(reactor, connectTimeout=connect_timeout, pool=self._pool))
        else:
            self._pool = None
        self._http = http

    @classmethod
    def connect(cls, location: S3Location, *, reactor: Any,
                run_in_thread: Optional[Threads] = None, **kwargs: Any) -> defer.Deferred[S3Client]:
        """
        Resolve credentials (and, for AWS without C{--s3-region}, the
        region) in a thread, then build the client. Fails with L{S3Error}
        (code C{NoCredentials}) when the chain finds none. Does not talk to
        the store: call L{check} for that.
        """
        run_in_thread = run_in_thread or _default_threads(reactor)
        d = run_in_thread(_resolve, location.region)

        def resolved(result: tuple[Any, Any, Optional[str]]) -> "S3Client":
            credentials, frozen, region = result
            if credentials is None or frozen is None or not frozen.access_key:
                raise S3Error(
                    "no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a shared "
                    "credentials file (AWS_SHARED_CREDENTIALS_FILE, ~/.aws/credentials, AWS_PROFILE), or give "
                    "the machine an instance role",
                    "NoCredentials",
                )
            where = location if location.region else location.for_aws(region or "us-east-1")
            source = CredentialSource(credentials, frozen, reactor, run_in_thread)
            return cls(where, source, reactor=reactor, run_in_thread=run_in_thread, **kwargs)

        return d.addCallback(resolved)

    # -- requests ---------------------------------------------------------

    def _signed_headers(self, method: str, url: str, headers: dict[str, str],
                        payload_sha256: Optional[str]) -> Headers:
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, headers=dict(headers))
        if payload_sha256 is not None:
            request.context["pypid_payload_sha256"] = payload_sha256
        self._signer(self.credentials.frozen(), "s3", self.location.region).add_auth(request)
        signed = Headers({b"user-agent": [b"pypid"]})
        for name, value in request.headers.items():
            signed.setRawHeaders(name.encode("latin-1"), [value.encode("latin-1")])
        return signed

    def _request(self, method: str, url: str, *, headers: Optional[dict[str, str]] = None,
                 producer: Any = None, payload_sha256: Optional[str] = None,
                 timeout: Optional[float] = None) -> defer.Deferred[IResponse]:
        """Send a signed request; fires with the (unbuffered) response, or fails with L{StoreUnreachable}."""
        try:
            signed = self._signed_headers(method, url, headers or {}, payload_sha256)
        except Exception as e:  # botocore refuses (e.g. no credentials)
            return defer.fail(S3Error(f"cannot sign the request: {e}", "Signing"))
        d: defer.Deferred[IResponse] = self._http.request(method, url, headers=signed, data=producer, allow_redirects=False,
                               unbuffered=True, reactor=self._reactor, timeout=timeout or self.timeout)
        d.addErrback(self._unreachable, timeout or self.timeout)
        return d

    def _unreachable(self, failure: Failure, timeout: float) -> Failure:
        """Turn Twisted's connection failures into one clear L{StoreUnreachable}."""
        where = f"the object store at {self.location.endpoint}"
        reason = failure
        if failure.check(ResponseNeverReceived, RequestTransmissionFailed, ResponseFailed):
            reasons = getattr(failure.value, "reasons", None) or []
            if reasons:
                reason = reasons[0]
        if reason.check(ierror.ConnectionRefusedError):
            why = "connection refused"
        elif reason.check(ierror.DNSLookupError):
            why = f"host name {urlsplit(self.location.object_url('')).hostname!r} not found"
        elif reason.check(defer.CancelledError, ierror.TimeoutError):
            why = f"no answer within {timeout:g} s"
        elif reason.check(ierror.ConnectError):
            why = f"cannot connect ({reason.getErrorMessage()})"
        elif type(reason.value).__module__.startswith("OpenSSL"):
            why = f"TLS failure ({reason.getErrorMessage()[:200]})"
        elif reason.check(ierror.ConnectionDone, ierror.ConnectionLost):
            why = "connection closed before an answer"
        else:
            return failure
        raise StoreUnreachable(f"cannot reach {where}: {why}", "Unreachable")

    def _error(self, response: Any, body: bytes, key: Optional[str] = None) -> S3Error:
        """The L{S3Error} for a non-2xx answer, one line, credentials unnamed but their origin."""
        return error_for(self.location, self.credentials.method, response.code,
                         lambda name: _header(response, name), body, key)

    def _not_s3(self, response: Any) -> S3Error:
        return _not_s3(self.location, response.code, _header(response, b"content-type"))

    def _fail(self, response: Any, key: Optional[str] = None) -> defer.Deferred[NoReturn]:
        """Read an error answer's body (bounded) and fail with its L{S3Error}."""
        d = _read_body(response, _ERROR_LIMIT)
        d.addErrback(lambda _: b"")
        return d.addCallback(lambda body: defer.fail(self._error(response, body, key)))

    # -- operations -------------------------------------------------------

    def check(self) -> defer.Deferred[None]:
        """
        The start-up check: list one key of the prefix. Fires with L{None}
        when the bucket answers to these credentials, or fails with one
        clear L{S3Error} (no such bucket, unknown key, wrong secret, access
        denied, wrong region, not an S3 store, unreachable).
        """
        url = self.location.bucket_url([("list-type", "2"), ("max-keys", "1"), ("prefix", self.location.prefix)])

        def answered(response: Any) -> Any:
            if response.code != 200:
                return self._fail(response)
            d = _read_body(response, _BODY_LIMIT)

            def parsed(body: bytes) -> None:
                root = _parse_xml(body)
                if root is None or _local(root.tag) != "ListBucketResult":
                    raise self._not_s3(response)

            return d.addCallback(parsed)

        return self._request("GET", url).addCallback(answered)

    def put_file(self, key: str, path: str, *, size: Optional[int] = None, sha256: Optional[str] = None,
                 md5: Optional[str] = None, content_type: str = "application/octet-stream") -> defer.Deferred[str]:
        """
        Upload the file at C{path} as C{key}, streamed from disk (64 KiB
        reads on the reactor thread, as the directory store's downloads do).
        The body's sha256 is signed and its md5 sent as C{Content-MD5}, so
        the store refuses bytes that differ from what was hashed (a file
        changed meanwhile, a corrupted transfer). Give C{size}, C{sha256}
        and C{md5} (hex) when known; otherwise they are computed in a thread
        first. Fires with the ETag.
        """
        if sha256 is None or size is None or md5 is None:
            hashed = self._run_in_thread(_hash_file, path)
            return hashed.addCallback(lambda h: self.put_file(key, path, size=h[0], sha256=h[1], md5=h[2],
                                                         content_type=content_type))
        try:
            handle = open(path, "rb")
        except OSError as e:
            return defer.fail(S3Error(f"cannot read {path}: {e.strerror}", "LocalFile"))
        producer = FileBodyProducer(handle)
        timeout = self.timeout + size * _UPLOAD_SECONDS_PER_BYTE
        headers = {"Content-Type": content_type, "Content-MD5": base64.b64encode(bytes.fromhex(md5)).decode()}
        d = self._request("PUT", self.location.object_url(key), headers=headers, producer=producer,
                          payload_sha256=sha256, timeout=timeout)
        d.addBoth(_closing(handle))
        return d.addCallback(self._stored, key)

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> defer.Deferred[str]:
        """Upload a small object (a sidecar) from memory. Fires with the ETag."""
        from io import BytesIO

        producer = FileBodyProducer(BytesIO(data))
        headers = {"Content-Type": content_type, "Content-MD5": base64.b64encode(hashlib.md5(data).digest()).decode()}
        d = self._request("PUT", self.location.object_url(key), headers=headers, producer=producer,
                          payload_sha256=hashlib.sha256(data).hexdigest())
        return d.addCallback(self._stored, key)

    def _stored(self, response: Any, key: str) -> Any:
        if response.code != 200:
            return self._fail(response, key)
        etag = (_header(response, b"etag") or b"").decode("latin-1").strip('"')
        return _read_body(response, _ERROR_LIMIT).addCallback(lambda _: etag)

    def head(self, key: str) -> defer.Deferred[Optional[ObjectInfo]]:
        """Fires with the L{ObjectInfo} of C{key}, or L{None} when there is none."""

        def answered(response: Any) -> Any:
            if response.code == 404:
                return _read_body(response, _ERROR_LIMIT).addBoth(lambda _: None)
            if response.code != 200:
                return self._fail(response, key)
            info = self._info(response, key, int(_header(response, b"content-length") or b"0"))
            return _read_body(response, _ERROR_LIMIT).addCallback(lambda _: info)

        return self._request("HEAD", self.location.object_url(key)).addCallback(answered)

    def _info(self, response: Any, key: str, size: int) -> ObjectInfo:
        content_type = _header(response, b"content-type")
        return ObjectInfo(
            key=key,
            size=size,
            etag=(_header(response, b"etag") or b"").decode("latin-1").strip('"'),
            last_modified=_http_date(_header(response, b"last-modified")),
            content_type=content_type.decode("latin-1") if content_type else None,
        )

    def open(self, key: str, byte_range: Optional[tuple[int, Optional[int]]] = None) -> defer.Deferred[ObjectBody]:
        """
        Start a download of C{key}, or of bytes C{first..last} (inclusive;
        C{last} L{None} for the rest) of it. Fires with an L{ObjectBody}
        once the headers are in; fails with L{ObjectNotFound} or
        L{RangeNotSatisfiable}.
        """
        headers = {}
        if byte_range is not None:
            first, last = byte_range
            if first < 0 or (last is not None and last < first):
                return defer.fail(ValueError(f"bad byte range {byte_range!r}"))
            headers["Range"] = f"bytes={first}-{'' if last is None else last}"

        def answered(response: Any) -> Any:
            # Twisted keeps Content-Length out of a GET's headers: it is the length.
            length = response.length if isinstance(response.length, int) else None
            if response.code == 200:
                size = length if length is not None else -1
                return ObjectBody(response, self._info(response, key, size), length, None)
            if response.code == 206:
                parsed = _content_range(_header(response, b"content-range"))
                first, last, total = parsed if parsed is not None else (None, None, None)
                if first is None or last is None or total is None:
                    ObjectBody(response, self._info(response, key, -1), None, None).discard()
                    raise S3Error(f"the object store answered a range of {key!r} without a usable Content-Range",
                                  "BadRange", 206)
                return ObjectBody(response, self._info(response, key, total), length, (first, last, total))
            if response.code == 416:
                parsed = _content_range(_header(response, b"content-range"))
                missing = parsed[2] if parsed else None
                d = _read_body(response, _ERROR_LIMIT)
                d.addBoth(lambda _: defer.fail(RangeNotSatisfiable(
                    f"range {headers.get('Range')} is beyond the end of {key!r}", missing)))
                return d
            return self._fail(response, key)

        return self._request("GET", self.location.object_url(key), headers=headers).addCallback(answered)

    def delete(self, key: str) -> defer.Deferred[None]:
        """Remove C{key}. Fires with L{None}, also when it was not there (S3 does not tell)."""

        def answered(response: Any) -> Any:
            if response.code not in (200, 204, 404):
                return self._fail(response, key)
            return _read_body(response, _ERROR_LIMIT).addCallback(lambda _: None)

        return self._request("DELETE", self.location.object_url(key)).addCallback(answered)

    def list(self, prefix: str = "", token: Optional[str] = None, max_keys: int = 1000) -> defer.Deferred[ListPage]:
        """
        One page (at most C{max_keys}) of the objects whose keys start with
        C{prefix} (relative to the location's prefix), in key order; pass
        the page's C{next_token} for the next. Fires with a L{ListPage}.
        """
        query = [("list-type", "2"), ("max-keys", str(max_keys)), ("prefix", self.location.prefix + prefix)]
        if token is not None:
            query.append(("continuation-token", token))
        url = self.location.bucket_url(sorted(query))

        def answered(response: Any) -> Any:
            if response.code != 200:
                return self._fail(response)
            return _read_body(response, _BODY_LIMIT).addCallback(self._page)

        return self._request("GET", url).addCallback(answered)

    def _page(self, body: bytes) -> ListPage:
        root = _parse_xml(body)
        if root is None or _local(root.tag) != "ListBucketResult":
            raise S3Error(f"{self.location.endpoint} answered a listing that is not S3's", "NotS3", 200)
        skip = len(self.location.prefix)
        objects = []
        for element in root:
            if _local(element.tag) != "Contents":
                continue
            key = _child_text(element, "Key") or ""
            objects.append(ObjectInfo(
                key=key[skip:],
                size=int(_child_text(element, "Size") or 0),
                etag=(_child_text(element, "ETag") or "").strip('"'),
                last_modified=_iso_date(_child_text(element, "LastModified")),
            ))
        truncated = (_child_text(root, "IsTruncated") or "").lower() == "true"
        token = _child_text(root, "NextContinuationToken") if truncated else None
        return ListPage(tuple(objects), token or None)

    @defer.inlineCallbacks
    def list_all(self, prefix: str = "") -> Any:
        """Every object under C{prefix}, page after page (for fsck). Fires with a list of L{ObjectInfo}."""
        objects: list[ObjectInfo] = []
        token = None
        while True:
            page = yield self.list(prefix, token)
            objects.extend(page.objects)
            if page.next_token is None:
                return objects
            token = page.next_token

    def presign_get(self, key: str, expires: int = PRESIGN_SECONDS) -> str:
        """
        A URL that lets whoever holds it GET C{key} for C{expires} seconds
        (for C{--s3-redirect}). Signed here, on the reactor thread; no
        request is made.
        """
        from botocore.auth import S3SigV4QueryAuth
        from botocore.awsrequest import AWSRequest

        if not 1 <= expires <= PRESIGN_MAX_SECONDS:
            raise ValueError(f"a presigned URL lasts 1 to {PRESIGN_MAX_SECONDS} seconds, not {expires}")
        request = AWSRequest(method="GET", url=self.location.object_url(key))
        S3SigV4QueryAuth(self.credentials.frozen(), "s3", self.location.region, expires=expires).add_auth(request)
        url: str = request.url
        return url

    def close(self) -> defer.Deferred[None]:
        """Close kept connections (at shutdown)."""
        if self._pool is None:
            return defer.succeed(None)
        closed: defer.Deferred[None] = self._pool.closeCachedConnections()
        return closed


def _closing(handle: Any) -> Callable[[Any], Any]:
    def close(result: Any) -> Any:
        handle.close()
        return result

    return close


def _hash_file(path: str) -> tuple[int, str, str]:
    """Size, sha256 and md5 (hex) of a file. Blocking: runs in a thread."""
    sha256 = hashlib.sha256()
    md5 = hashlib.md5()
    size = 0
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(1024 * 1024)
            if not chunk:
                return size, sha256.hexdigest(), md5.hexdigest()
            sha256.update(chunk)
            md5.update(chunk)
            size += len(chunk)


def _default_threads(reactor: Any) -> Threads:
    def run(f: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> defer.Deferred[_T]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), f, *args, **kwargs)

    return run


def check_blocking(location: S3Location, timeout: float = 10.0) -> tuple[S3Location, Any, Any]:
    """
    The start-up check, before the reactor runs (C{twistd} starts its
    services first): resolve credentials and the region through botocore's
    chain, then list one key of the prefix with a signed request. Returns
    the location with its region resolved, and botocore's credentials with
    a frozen copy (for a L{CredentialSource}); raises one clear L{S3Error}
    (no credentials, no such bucket, unknown key, wrong secret, access
    denied, wrong region, not an S3 store, unreachable). Blocking.
    """
    import http.client
    import socket
    import ssl

    from botocore.awsrequest import AWSRequest

    credentials, frozen, region = _resolve(location.region)
    if credentials is None or frozen is None or not frozen.access_key:
        raise S3Error(
            "no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a shared "
            "credentials file (AWS_SHARED_CREDENTIALS_FILE, ~/.aws/credentials, AWS_PROFILE), or give "
            "the machine an instance role",
            "NoCredentials",
        )
    where = location if location.region else location.for_aws(region or "us-east-1")
    url = where.bucket_url([("list-type", "2"), ("max-keys", "1"), ("prefix", where.prefix)])
    request = AWSRequest(method="GET", url=url, headers={})
    _signer_class()(frozen, "s3", where.region).add_auth(request)
    parts = urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    assert parts.hostname is not None  # the bucket's URL is absolute
    connection = connection_class(parts.hostname, parts.port, timeout=timeout)
    place = f"the object store at {where.endpoint}"
    try:
        try:
            connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""),
                               headers={"User-Agent": "pypid", **dict(request.headers.items())})
            response = connection.getresponse()
            body = response.read(_BODY_LIMIT)
        except ConnectionRefusedError:
            raise StoreUnreachable(f"cannot reach {place}: connection refused", "Unreachable") from None
        except socket.gaierror:
            raise StoreUnreachable(f"cannot reach {place}: host name {parts.hostname!r} not found",
                                   "Unreachable") from None
        except (socket.timeout, TimeoutError):
            raise StoreUnreachable(f"cannot reach {place}: no answer within {timeout:g} s", "Unreachable") from None
        except ssl.SSLError as e:
            raise StoreUnreachable(f"cannot reach {place}: TLS failure ({e})", "Unreachable") from None
        except (OSError, http.client.HTTPException) as e:
            raise StoreUnreachable(f"cannot reach {place}: {e.__class__.__name__}: {e}", "Unreachable") from None
    finally:
        connection.close()
    if response.status != 200:
        def header(name: bytes) -> Optional[bytes]:
            value = response.getheader(name.decode("ascii"))
            return value.encode("latin-1") if value is not None else None

        raise error_for(where, getattr(credentials, "method", None) or "unknown", response.status, header, body)
    root = _parse_xml(body)
    if root is None or _local(root.tag) != "ListBucketResult":
        content_type = response.getheader("content-type")
        raise _not_s3(where, response.status, content_type.encode("latin-1") if content_type else None)
    return where, credentials, frozen
