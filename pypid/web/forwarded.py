"""
A Request mixin that believes C{X-Forwarded-*} from trusted proxies only.

The Site carries the C{trusted_proxies} (L{pypid.web.proxy.TrustedProxies}); the
request works out once, lazily, who the client is and which scheme, host and
path prefix it used. C{getClientAddress} (so the access log and address
checks see the real client) and C{isSecure} (so absolute URLs say
C{https}) follow it; L{pypid.web.util.base_url} reads the rest.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

from pypid.web.proxy import UNIX, Forwarded, TrustedProxies, parse_address

_NOBODY = TrustedProxies()


def _joined(request, name: bytes) -> Optional[str]:
    values = request.requestHeaders.getRawHeaders(name)
    if not values:
        return None
    return ",".join(v.decode("latin-1") for v in values)


def peer_of(address) -> str:
    """The peer address as L{TrustedProxies.trusts} takes it."""
    if isinstance(address, UNIXAddress):
        return UNIX
    return getattr(address, "host", "") or ""


class ForwardedRequestMixin:
    """Mix into a L{twisted.web.server.Request} subclass, before it."""

    _forwarded: Optional[Forwarded] = None

    def _trusted_proxies(self) -> TrustedProxies:
        site = getattr(self, "site", None) or getattr(getattr(self, "channel", None), "site", None)
        return getattr(site, "trusted_proxies", None) or _NOBODY

    def forwarded(self) -> Forwarded:
        """The client and URL as the trusted proxies describe them."""
        if self._forwarded is None:
            peer = peer_of(super().getClientAddress())  # type: ignore[misc]
            proxies = self._trusted_proxies()
            if not proxies:
                # No proxy to believe: the headers are not even read.
                self._forwarded = proxies.resolve(peer)
                return self._forwarded
            self._forwarded = proxies.resolve(
                peer,
                _joined(self, b"x-forwarded-for"),
                _joined(self, b"x-forwarded-proto"),
                _joined(self, b"x-forwarded-host"),
                _joined(self, b"x-forwarded-prefix"),
            )
        return self._forwarded

    def getClientAddress(self):
        real = super().getClientAddress()  # type: ignore[misc]
        info = self.forwarded()
        if not info.proxied or info.client == peer_of(real):
            return real
        parsed = parse_address(info.client)
        if parsed is None:
            return real
        kind = IPv6Address if parsed.version == 6 else IPv4Address
        return kind("TCP", str(parsed), 0)

    def isSecure(self) -> bool:
        proto = self.forwarded().proto
        if proto is not None:
            return proto == "https"
        return super().isSecure()  # type: ignore[misc]
