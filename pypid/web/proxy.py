"""
Trusted reverse proxies: which peers may tell pypid, through
C{X-Forwarded-For}, C{-Proto}, C{-Host} and C{-Prefix}, who the client is and
which URL it used. Pure: no I/O, no Twisted.

Only a peer inside one of the C{--trusted-proxy} networks is believed.
C{X-Forwarded-For} is walked from the right (the hop nearest to pypid), and
the walk stops at the first address that is not itself a trusted proxy: that
address is the client. Anything further left was written by the client and
is ignored. The other headers are taken from the value the nearest proxy set
(the rightmost one) and only when they are well-formed.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable, NamedTuple, Optional, Sequence, Union

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*/?$")


#: The C{--trusted-proxy} value that trusts peers on a Unix socket (a proxy
#: on the same machine, e.g. nginx with C{proxy_pass http://unix:...}).
UNIX = "unix"


def parse_network(value: str) -> Network:
    """
    A network from C{10.0.0.0/8}, C{::1}, or a single address.

    @raise ValueError: if C{value} is neither.
    """
    return ipaddress.ip_network(value.strip(), strict=False)


def parse_address(value: str) -> Optional[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]]:
    """
    An IP address from an C{X-Forwarded-For} entry or a peer address, or
    L{None}. Accepts C{[v6]:port}, C{v4:port} and IPv4-mapped IPv6.
    """
    value = value.strip().strip('"')
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class Forwarded(NamedTuple):
    """What a request says about itself once proxies are accounted for."""

    #: The client's address (the peer itself when no proxy is trusted).
    client: str
    #: C{"https"}, C{"http"}, or L{None} when the connection decides.
    proto: Optional[str]
    #: The C{Host} the client used, from a trusted C{X-Forwarded-Host}.
    host: Optional[str]
    #: The path prefix pypid is mounted at, C{""} or like C{"/pypi"}.
    prefix: str
    #: Whether the peer was a trusted proxy.
    proxied: bool


def _last(value: Optional[str]) -> Optional[str]:
    """The rightmost comma-separated element of a header, stripped."""
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",")]
    return parts[-1] if parts and parts[-1] else None


def clean_prefix(value: Optional[str]) -> str:
    """C{"/pypi/"} -> C{"/pypi"}; C{"/"} or anything malformed -> C{""}."""
    if not value or not _PREFIX.match(value) or "//" in value or "/../" in value + "/":
        return ""
    return value.rstrip("/")


class TrustedProxies:
    """The C{--trusted-proxy} networks, and the rules for believing them."""

    def __init__(self, networks: Iterable[Network] = (), unix: bool = False) -> None:
        self.networks: tuple[Network, ...] = tuple(networks)
        self.unix = unix

    @classmethod
    def parse(cls, values: Sequence[str]) -> "TrustedProxies":
        """
        From C{--trusted-proxy} values: networks, addresses, or C{unix}.

        @raise ValueError: on anything else.
        """
        unix = any(v.strip().lower() == UNIX for v in values)
        return cls((parse_network(v) for v in values if v.strip().lower() != UNIX), unix)

    def __bool__(self) -> bool:
        return bool(self.networks) or self.unix

    def trusts(self, address: str) -> bool:
        """Whether C{address} (an IP, or C{"unix"} for a Unix socket peer) is a trusted proxy."""
        if address == UNIX:
            return self.unix
        parsed = parse_address(address)
        return parsed is not None and any(parsed in network for network in self.networks)

    def resolve(
        self,
        peer: str,
        forwarded_for: Optional[str] = None,
        proto: Optional[str] = None,
        host: Optional[str] = None,
        prefix: Optional[str] = None,
    ) -> Forwarded:
        """
        Work out the client and the URL it used from the TCP C{peer} and the
        forwarding headers (all of one name joined by commas, or L{None}).
        """
        if not (self and self.trusts(peer)):
            return Forwarded(peer, None, None, "", False)
        client = peer
        hops = [h for h in (forwarded_for or "").split(",") if h.strip()]
        for hop in reversed(hops):
            address = parse_address(hop)
            if address is None:
                break
            client = str(address)
            if not self.trusts(client):
                break
        scheme = (_last(proto) or "").lower()
        forwarded_host = _last(host)
        if forwarded_host is not None and not _HOST.match(forwarded_host):
            forwarded_host = None
        return Forwarded(
            client,
            scheme if scheme in ("http", "https") else None,
            forwarded_host,
            clean_prefix(_last(prefix)),
            True,
        )
