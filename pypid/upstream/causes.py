"""
Why a request to the upstream failed, in a few words for people: what the
log, the 502 body and its reason phrase say (never a Failure's repr), and
whether the failure means the upstream cannot be reached at all (then the
fallback stops asking it for a short while).
"""

from __future__ import annotations

from typing import NamedTuple


class Cause(NamedTuple):
    #: A short phrase: "connection refused", "TLS: certificate verify failed".
    text: str
    #: Whether no HTTP answer came at all (refused, unreachable, timed out, TLS).
    unreachable: bool
    #: Whether it failed in the TLS handshake (a CA the client does not trust, ...).
    tls: bool = False
    #: Whether it took a timeout to fail (asking again would wait as long).
    slow: bool = False


def _ssl_reasons(error: BaseException) -> str:
    """The reasons OpenSSL gave (its error is a list of (library, function, reason))."""
    reasons = []
    for arg in getattr(error, "args", ()):
        if isinstance(arg, list):
            for item in arg:
                if isinstance(item, tuple) and item and item[-1]:
                    reasons.append(str(item[-1]))
    return ", ".join(dict.fromkeys(reasons)) or str(error) or "handshake failed"


def _is_ssl(error: BaseException) -> bool:
    kind = type(error)
    return kind.__module__.startswith("OpenSSL") or kind.__name__ in ("SSLError", "CertificateError", "VerifyError")


def describe(error: BaseException) -> Cause:
    """What went wrong with an upstream request that raised C{error}."""
    from twisted.internet import error as errors
    from twisted.internet.defer import CancelledError
    from twisted.python.failure import Failure

    if isinstance(error, Failure):
        error = error.value
    reasons = getattr(error, "reasons", None)
    if isinstance(reasons, list) and reasons:
        # twisted.web's ResponseNeverReceived and friends: the reasons inside.
        inner = [r.value if isinstance(r, Failure) else r for r in reasons]
        for reason in inner:
            if _is_ssl(reason):
                return Cause(f"TLS: {_ssl_reasons(reason)}", True, True)
        for reason in inner:
            if isinstance(reason, (CancelledError, errors.TimeoutError)):
                return Cause("no answer in time", True, slow=True)
        for reason in inner:
            if isinstance(reason, (errors.ConnectionLost, errors.ConnectionDone)):
                return Cause("the connection closed before an answer", True)
        return describe(inner[0])
    if _is_ssl(error):
        return Cause(f"TLS: {_ssl_reasons(error)}", True, True)
    if isinstance(error, (errors.ConnectionRefusedError, ConnectionRefusedError)):
        return Cause("connection refused", True)
    if isinstance(error, (errors.DNSLookupError, errors.UnknownHostError)):
        return Cause("host name not found", True)
    if isinstance(error, (errors.ConnectingCancelledError, errors.TCPTimedOutError, errors.TimeoutError)):
        # (Twisted's TimeoutError on its own is the connect timeout.)
        return Cause("timed out connecting", True, slow=True)
    if isinstance(error, (CancelledError, TimeoutError)):
        return Cause("no answer in time", True, slow=True)
    if isinstance(error, errors.NoRouteError):
        return Cause("no route to the host", True)
    if isinstance(error, errors.ConnectError):
        text = error.osError if isinstance(getattr(error, "osError", None), str) else None
        return Cause(f"cannot connect ({text or type(error).__name__})", True)
    if isinstance(error, ConnectionError):
        return Cause(f"cannot connect ({error.strerror or error})", True)
    if getattr(error, "timed_out", False):
        return Cause(str(error), False)
    return Cause(str(error) or type(error).__name__, False)
