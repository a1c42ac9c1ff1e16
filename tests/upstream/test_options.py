"""The fallback's options, and what makeService builds from them."""

import os

from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from pypid import tap
from pypid.upstream.service import UpstreamService

UP = "http://127.0.0.1:1/simple"


def parse(*argv):
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


def fallback(*argv):
    return parse(*argv).config.upstream


class FallbackOptionsTests(SynchronousTestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def test_upstream_options_need_a_fallback_url(self):
        """Upstream settings without --fallback-url are refused, never ignored."""
        for args in (["--list-upstream"], ["--upstream-ttl", "30"], ["--upstream-allow", "foo"],
                     ["--cache-max-size", "1G"], ["--fallback-mode", "redirect"]):
            error = self.assertRaises(usage.UsageError, parse, *args, self.dir)
            self.assertIn("needs --fallback-url", str(error))
        self.assertIsNone(fallback("--fallback-url", UP, "--disable-fallback", "--list-upstream", self.dir))

    def test_no_fallback_by_default(self):
        self.assertIsNone(fallback(self.dir))
        self.assertIsNone(fallback("--fallback-url", UP, "--disable-fallback", self.dir))

    def test_defaults(self):
        config = fallback("--fallback-url", UP, self.dir)
        self.assertEqual(config.url, UP + "/")
        self.assertEqual(config.mode, "cache")
        self.assertEqual(config.ttl, 600)
        self.assertEqual(config.cache_dir, os.path.join(self.dir, ".pypid", "upstream"))
        self.assertIsNone(config.max_size)
        self.assertEqual(config.allow, frozenset())
        self.assertFalse(config.list_upstream)

    def test_values(self):
        names = os.path.join(self.dir, "allow.txt")
        with open(names, "w") as f:
            f.write("# merged with upstream\nFoo.Bar\n\nbaz  # trailing comment\n")
        config = fallback("--fallback-url", UP, "--fallback-mode", "redirect", "--upstream-ttl", "30",
                       "--cache-max-size", "2G", "--cache-dir", "cache", "--upstream-allow", "Qux",
                       "--upstream-allow", "@" + names, self.dir)
        self.assertEqual((config.mode, config.ttl, config.max_size), ("redirect", 30, 2 * 1024 ** 3))
        self.assertEqual(config.cache_dir, os.path.abspath("cache"))
        self.assertRaises(usage.UsageError, parse, "--fallback-url", UP, "--upstream-allow", "-bad-", self.dir)
        self.assertEqual(fallback("--fallback-url", UP, "--upstream-allow", "Qux", self.dir).allow,
                         frozenset({"qux"}))
        self.assertEqual(config.allow, frozenset({"foo-bar", "baz", "qux"}))

    def test_deny_patterns(self):
        config = fallback("--fallback-url", UP, "--upstream-deny", "ACME_*", "--upstream-deny", "secret.Tool",
                       self.dir)
        self.assertEqual(config.deny, ("acme-*", "secret-tool"))
        self.assertRaises(usage.UsageError, parse, "--fallback-url", UP, "--upstream-deny", "a/b", self.dir)

    def test_cache_dir_follows_the_state_dir(self):
        state = os.path.abspath(self.mktemp())
        config = fallback("--fallback-url", UP, "--state-dir", state, self.dir)
        self.assertEqual(config.cache_dir, os.path.join(state, "upstream"))

    def test_hidden_cache_dir_inside_a_package_directory(self):
        cache = os.path.join(self.dir, ".cache", "up")
        self.assertEqual(fallback("--fallback-url", UP, "--cache-dir", cache, self.dir).cache_dir, cache)

    def test_refusals(self):
        for argv in (
            ["--fallback-url", "ftp://x/simple/"],
            ["--fallback-url", "/simple/"],
            ["--fallback-url", UP, "--fallback-mode", "proxy"],
            ["--fallback-url", UP, "--upstream-ttl", "soon"],
            ["--fallback-url", UP, "--cache-max-size", "lots"],
            ["--fallback-url", UP, "--upstream-ca", os.path.join(self.dir, "missing.pem")],
            ["--fallback-url", UP, "--upstream-allow", "@" + os.path.join(self.dir, "missing")],
            ["--fallback-url", UP, "--cache-dir", os.path.join(self.dir, "cache")],
            ["--fallback-url", UP, "--cache-dir", self.dir],
        ):
            self.assertRaises(usage.UsageError, parse, *argv, self.dir)

    def test_make_service_touches_nothing(self):
        options = parse("--port", "tcp:0:interface=127.0.0.1", "--fallback-url", UP, self.dir)
        top = tap.makeService(options, reactor=MemoryReactorClock())
        service = top.getServiceNamed("upstream")
        self.assertIsInstance(service, UpstreamService)
        self.assertIsNone(service.client.pool, "the pool is built in startService")
        self.assertFalse(os.path.exists(os.path.join(self.dir, ".pypid", "upstream")))
