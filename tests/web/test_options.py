"""The HTTP options: the health endpoint never hides a route pypid serves."""

from __future__ import annotations

import os

from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from pypid import tap
from pypid.web.options import SERVED


def parse(*argv):
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


class HealthEndpointTests(SynchronousTestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def test_own_paths_accepted(self):
        for path in ("/health", "/healthz", "/action/health", "/health/live-1", "/api_health",
                     "/simple-health", "/packages_ok"):
            self.assertEqual(parse("--health-endpoint", path, self.dir).config.web.health_endpoint, path)

    def test_served_routes_refused(self):
        """Any path at or under a route pypid serves is refused, in one line naming it."""
        for path, hidden in (
            ("/simple", "/simple"), ("/simple/", "/simple"), ("/simple/foo", "/simple"),
            ("/SIMPLE/", "/simple"), ("/packages/", "/packages"), ("/packages", "/packages"),
            ("/pypi/x/json", "/pypi"), ("/project/", "/project"), ("/search", "/search"),
            ("/RPC2", "/RPC2"), ("/rpc2", "/RPC2"), ("/legacy", "/legacy"), ("/legacy/", "/legacy"),
            ("/metrics", "/metrics"),
        ):
            e = self.assertRaises(usage.UsageError, parse, "--health-endpoint", path, self.dir)
            self.assertIn(f"would hide {hidden}, which pypid serves", str(e), path)
            self.assertNotIn("\n", str(e))

    def test_paths_that_are_not_plain_refused(self):
        for path in ("/", "health", "/+upstream/x", "/favicon.ico", "/robots.txt", "/a b", ""):
            self.assertRaises(usage.UsageError, parse, "--health-endpoint", path, self.dir)

    def test_every_child_of_the_root_is_known(self):
        """
        The list of served routes follows the resource tree: every child of
        the root, with every option that adds one, is in it.
        """
        options = parse("--metrics", "--fallback-url", "http://127.0.0.1:1/simple/", "-P", ".", "-a", ".",
                        self.dir)
        top = tap.makeService(options, reactor=MemoryReactorClock())
        root = top.getServiceNamed("web-0").factory.resource
        children = {name.decode("ascii") for name in root.children} - {""}
        self.assertIn("+upstream", children)
        self.assertIn("metrics", children)
        self.assertEqual(children - set(SERVED), set())


class ServedLineTests(SynchronousTestCase):
    def test_counts_in_good_english(self):
        from pypid.web.options import served_line

        url = "http://127.0.0.1:3141/simple/"
        self.assertEqual(served_line([url], 12, 40), f"serving {url} : 12 projects, 40 files")
        self.assertEqual(served_line([url], 1, 1), f"serving {url} : 1 project, 1 file")
        self.assertEqual(served_line([url], 0, 0), f"serving {url} : 0 projects, 0 files")
        self.assertEqual(served_line([url, "https://[::1]:8443/simple/"], 1, 2),
                         f"serving {url}, https://[::1]:8443/simple/ : 1 project, 2 files")

    def test_listener_urls(self):
        """A wildcard address is shown as the loopback one, marked as every interface."""
        from twisted.internet.address import IPv4Address, IPv6Address
        from twisted.internet.testing import MemoryReactor
        from twisted.internet.endpoints import TCP4ServerEndpoint

        from pypid.ops.startup import Listener

        class Port:
            def __init__(self, address):
                self.address = address

            def getHost(self):
                return self.address

        listener = Listener(TCP4ServerEndpoint(MemoryReactor(), 0), None)
        self.assertIsNone(listener.url())
        listener.port = Port(IPv4Address("TCP", "0.0.0.0", 3141))
        self.assertEqual((listener.url(), listener.everywhere), ("http://127.0.0.1:3141/", True))
        listener.port = Port(IPv4Address("TCP", "10.1.2.3", 80))
        self.assertEqual((listener.url(), listener.everywhere), ("http://10.1.2.3:80/", False))
        listener.port = Port(IPv6Address("TCP", "::", 8443))
        self.assertEqual(listener.url("https"), "https://[::1]:8443/")


class BacklogTests(SynchronousTestCase):
    def test_a_backlog_for_sockets_that_name_none(self):
        from pypid.web.options import BACKLOG, with_backlog

        self.assertEqual(with_backlog("tcp:3141"), f"tcp:3141:backlog={BACKLOG}")
        self.assertEqual(with_backlog("tcp:3141:interface=127.0.0.1"),
                         f"tcp:3141:interface=127.0.0.1:backlog={BACKLOG}")
        self.assertEqual(with_backlog("unix:/run/pypid.sock"), f"unix:/run/pypid.sock:backlog={BACKLOG}")
        for kept in ("tcp:3141:backlog=10", "systemd:domain=INET:index=0", "tcp:3141:interface=::1:backlog=5"):
            self.assertEqual(with_backlog(kept), kept)

    def test_the_endpoint_takes_it(self):
        from twisted.internet.testing import MemoryReactor

        from pypid.web.options import BACKLOG, endpoint

        self.assertEqual(endpoint(MemoryReactor(), "--port", "tcp:3141")._backlog, BACKLOG)
        self.assertEqual(endpoint(MemoryReactor(), "--port", "tcp:3141:backlog=7")._backlog, 7)
