"""Trusted proxies: who the client is and which URL it used (unit tests)."""

from __future__ import annotations

import pytest
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.web.test.requesthelper import DummyChannel

from pypid.web.proxy import TrustedProxies, clean_prefix, parse_address
from pypid.web.site import PypidRequest, PypidSite
from pypid.web.util import base_url

PROXIES = TrustedProxies.parse(["127.0.0.1", "10.0.0.0/8"])


def test_untrusted_peer_headers_ignored():
    """An untrusted peer is the client, and its forwarding headers count for nothing."""
    info = PROXIES.resolve("192.0.2.7", "1.2.3.4", "https", "evil.example", "/x")
    assert info == ("192.0.2.7", None, None, "", False)


def test_walk_from_the_right_stops_at_first_untrusted_hop():
    """Entries left of the first untrusted hop were written by the client: ignored."""
    info = PROXIES.resolve("127.0.0.1", "6.6.6.6, 203.0.113.9, 10.1.2.3", None, None, None)
    assert info.client == "203.0.113.9" and info.proxied
    # Every hop trusted: the leftmost is the client.
    assert PROXIES.resolve("127.0.0.1", "10.0.0.2, 10.0.0.1").client == "10.0.0.2"
    # Garbage at the nearest hop: the proxy itself is the client.
    assert PROXIES.resolve("127.0.0.1", "1.2.3.4, junk").client == "127.0.0.1"
    assert PROXIES.resolve("127.0.0.1", "[2001:db8::1]:443").client == "2001:db8::1"


def test_trusted_headers_validated_and_nearest_value_wins():
    info = PROXIES.resolve("127.0.0.1", None, "http, HTTPS", "index.example:8443", "/pypi/")
    assert (info.proto, info.host, info.prefix) == ("https", "index.example:8443", "/pypi")
    bad = PROXIES.resolve("127.0.0.1", None, "gopher", "a b/c", "/../etc")
    assert (bad.proto, bad.host, bad.prefix) == (None, None, "")


@pytest.mark.parametrize("value, expected", [
    ("/pypi", "/pypi"), ("/pypi/", "/pypi"), ("/a/b/", "/a/b"), ("/", ""), ("", ""),
    (None, ""), ("pypi", ""), ("//evil.example", ""), ("/a/../b", ""), ("/a b", ""),
    ("/x\"><script>", ""),
])
def test_clean_prefix(value, expected):
    assert clean_prefix(value) == expected


def test_parse_address_forms():
    assert str(parse_address("::ffff:127.0.0.1")) == "127.0.0.1"
    assert str(parse_address("10.0.0.1:5000")) == "10.0.0.1"
    assert parse_address("unknown") is None


def test_unix_peers_only_with_unix():
    assert not PROXIES.trusts("unix")
    assert TrustedProxies.parse(["unix"]).trusts("unix")
    with pytest.raises(ValueError):
        TrustedProxies.parse(["not-a-network"])


def _request(peer, headers, trusted=PROXIES, host=b"127.0.0.1:3141"):
    site = PypidSite(None)
    site.trusted_proxies = trusted
    channel = DummyChannel()
    channel.site = site
    channel.transport.client = peer
    request = PypidRequest(channel)
    request.client = peer
    request.requestHeaders.setRawHeaders(b"host", [host])
    for name, value in headers.items():
        request.requestHeaders.setRawHeaders(name, [value])
    return request


FORWARDED = {
    b"x-forwarded-for": b"198.51.100.4",
    b"x-forwarded-proto": b"https",
    b"x-forwarded-host": b"index.example",
    b"x-forwarded-prefix": b"/pypi",
}


def test_request_from_trusted_proxy():
    """base_url, the client address and isSecure follow a trusted proxy."""
    request = _request(IPv4Address("TCP", "127.0.0.1", 5000), FORWARDED)
    assert base_url(request) == "https://index.example/pypi/"
    assert request.getClientAddress().host == "198.51.100.4"
    assert request.isSecure()


def test_request_from_untrusted_peer():
    """A forged X-Forwarded-Host from an untrusted peer never reaches a URL."""
    request = _request(IPv4Address("TCP", "192.0.2.1", 5000), FORWARDED)
    assert base_url(request) == "http://127.0.0.1:3141/"
    assert request.getClientAddress().host == "192.0.2.1"
    assert not request.isSecure()


def test_request_without_trusted_proxies():
    request = _request(IPv4Address("TCP", "127.0.0.1", 5000), FORWARDED, TrustedProxies())
    assert base_url(request) == "http://127.0.0.1:3141/"


def test_request_over_unix_socket():
    request = _request(UNIXAddress(b"/run/pypid.sock"), FORWARDED, TrustedProxies.parse(["unix"]))
    assert base_url(request) == "https://index.example/pypi/"
    assert request.getClientAddress().host == "198.51.100.4"


def test_real_server_trusts_only_configured_proxies(start_server, packages):
    """Absolute URLs (JSON API, welcome page) follow a trusted proxy's headers only."""
    from pypid.testing import wheel_bytes, write_dist

    write_dist(str(packages), wheel_bytes("demo", "1.0"))
    forged = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https",
              "X-Forwarded-Prefix": "/pypi"}
    untrusting = start_server(str(packages))
    _, _, body = untrusting.get("pypi/demo/json", forged)
    assert b"evil.example" not in body and f'"{untrusting.url}packages/'.encode() in body
    _, _, body = untrusting.get("", forged)
    assert b"evil.example" not in body
    trusting = start_server("--trusted-proxy", "127.0.0.1/32", str(packages))
    _, _, body = trusting.get("pypi/demo/json", forged)
    assert b'"https://evil.example/pypi/packages/demo-1.0-py3-none-any.whl"' in body
    _, _, body = trusting.get("", forged)
    assert b"https://evil.example/pypi/simple/" in body
    # Redirects stay relative whatever the headers say.
    status, headers, _ = trusting.get("simple/Demo", forged)
    assert (status, headers["Location"]) == (301, "demo/")
    assert "203.0.113.9" not in trusting.log()
    trusting.get("simple/", {"X-Forwarded-For": "6.6.6.6, 203.0.113.9"})
    trusting.stop()
    assert '203.0.113.9 "GET /simple/ HTTP/1.1" 200' in trusting.log()
    assert "6.6.6.6" not in trusting.log()


def test_bad_trusted_proxy_is_refused():
    from twisted.python import usage

    from pypid.tap import Options

    with pytest.raises(usage.UsageError):
        Options().parseOptions(["--trusted-proxy", "nonsense", "."])
    with pytest.raises(usage.UsageError):
        Options().parseOptions(["--log-format", "xml", "."])
