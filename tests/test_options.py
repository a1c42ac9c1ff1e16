import os

from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from pypid import tap
from pypid.feed.options import SpoolService
from pypid.ops.startup import Listener
from pypid.store.directory.rescans import IndexService


def parse(*argv):
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


class OptionsTests(SynchronousTestCase):
    def setUp(self):
        self.dir = self.mktemp()
        os.makedirs(self.dir)

    def test_bare_port_is_tcp(self):
        """A bare number means tcp:N; endpoint strings are kept; -p repeats."""
        options = parse("--port", "3141", "-p", "tcp:3142:interface=127.0.0.1", self.dir)
        self.assertEqual(options.config.web.ports, ("tcp:3141", "tcp:3142:interface=127.0.0.1"))

    def test_defaults(self):
        config = parse(self.dir).config
        self.assertEqual(config.web.ports, ("tcp:8080",))
        self.assertEqual(config.directory.hash_algo, "sha256")
        self.assertEqual(config.web.health_endpoint, "/health")
        self.assertEqual(config.directory.roots, (os.path.abspath(self.dir),))

    def test_packages_option_and_positional(self):
        other = self.mktemp()
        os.makedirs(other)
        options = parse("--packages", other, self.dir)
        self.assertEqual(options.config.directory.roots, (os.path.abspath(other), os.path.abspath(self.dir)))

    def test_missing_directory(self):
        """A missing package directory is a clear usage error, not a traceback."""
        e = self.assertRaises(usage.UsageError, parse, "/nonexistent/packages")
        self.assertIn("does not exist", str(e))

    def test_hash_algo(self):
        self.assertIsNone(parse("--hash-algo", "off", self.dir).config.directory.hash_algo)
        self.assertEqual(parse("--hash-algo", "SHA512", self.dir).config.directory.hash_algo, "sha512")
        self.assertRaises(usage.UsageError, parse, "--hash-algo", "sha1", self.dir)

    def test_health_endpoint(self):
        self.assertEqual(parse("--health-endpoint", "/ping/me", self.dir).config.web.health_endpoint, "/ping/me")
        self.assertRaises(usage.UsageError, parse, "--health-endpoint", "health", self.dir)

    def test_numbers(self):
        self.assertEqual(parse("--cache-control", "600", self.dir).config.web.cache_control, 600)
        self.assertRaises(usage.UsageError, parse, "--cache-control", "soon", self.dir)

    def test_welcome(self):
        path = os.path.join(self.dir, "welcome.html")
        with open(path, "w") as f:
            f.write("<p>{{NUMPKGS}}</p>")
        self.assertEqual(parse("--welcome", path, self.dir).config.web.welcome_template, "<p>{{NUMPKGS}}</p>")
        self.assertRaises(usage.UsageError, parse, "--welcome", path + ".missing", self.dir)

    def test_bad_endpoint(self):
        """An endpoint string that cannot be built is refused when the service is made."""
        options = parse("--port", "nonsense:1", self.dir)
        e = self.assertRaises(usage.UsageError, tap.makeService, options, MemoryReactorClock())
        self.assertIn("--port 'nonsense:1' is not a usable endpoint", str(e))


class MakeServiceTests(SynchronousTestCase):
    def test_services(self):
        """makeService builds the index service and one listener per --port, starting nothing."""
        directory = self.mktemp()
        os.makedirs(directory)
        options = parse("--port", "tcp:0:interface=127.0.0.1", "--port", "3141", directory)
        reactor = MemoryReactorClock()
        top = tap.makeService(options, reactor=reactor)
        self.assertIsInstance(top.getServiceNamed("index"), IndexService)
        self.assertIsInstance(top.getServiceNamed("web-0"), Listener)
        self.assertIsInstance(top.getServiceNamed("web-1"), Listener)
        from pypid.ops import malloc

        heap = ["heap"] if malloc.trim_function() is not None else []
        self.assertEqual(sorted(s.name for s in top), heap + ["index", "watch", "web-0", "web-1"])
        self.assertEqual(reactor.tcpServers, [], "nothing listens before startService")


class DownloadCacheControlTests(SynchronousTestCase):
    def test_public_unless_protected(self):
        """Downloads are public cache entries unless they need a password."""
        from pypid.web.files import download_cache_control

        self.assertIsNone(download_cache_control(None))
        self.assertEqual(download_cache_control(600), b"public, max-age=600")
        self.assertEqual(download_cache_control(600, private=True), b"private, max-age=600")

    def test_wired_from_options(self):
        """With -a download, --cache-control marks downloads private."""
        directory = self.mktemp()
        os.makedirs(directory)
        passwords = os.path.join(directory, ".htpasswd")
        with open(passwords, "w") as f:
            f.write("")
        options = parse("-P", passwords, "-a", "update,download", "--cache-control", "60", directory)
        top = tap.makeService(options, reactor=MemoryReactorClock())
        from pypid.web.files import Packages

        site = top.getServiceNamed("web-0").factory
        packages = site.resource.children[b"packages"]
        # Behind the Guard (and the token scope check behind it).
        while not isinstance(packages, Packages):
            packages = packages.wrapped
        self.assertEqual(packages.cache_control, b"private, max-age=60")


class SpoolTests(SynchronousTestCase):
    def test_spool_not_made_at_parse_or_start(self):
        """Option parsing touches no disk; the upload spool appears only while an upload is in flight."""
        directory = self.mktemp()
        os.makedirs(directory)
        options = parse("-P", ".", "-a", ".", directory)
        spool = os.path.join(directory, ".pypid-incoming")
        top = tap.makeService(options, reactor=MemoryReactorClock())
        self.assertFalse(os.path.exists(spool))
        spooler = top.getServiceNamed("spool")
        self.assertIsInstance(spooler, SpoolService)
        spooler.startService()
        self.assertFalse(os.path.exists(spool))


class ConnectionOptionsTests(SynchronousTestCase):
    """--max-connections, --header-timeout and --idle-timeout."""

    def setUp(self):
        import resource

        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

    def test_defaults(self):
        from pypid.web import channel

        web = parse(self.dir).config.web
        self.assertEqual(web.header_timeout, channel.HEADER_TIMEOUT)
        self.assertEqual(web.idle_timeout, channel.IDLE_TIMEOUT)
        self.assertGreaterEqual(web.max_connections, 1)
        self.assertLessEqual(web.max_connections, channel.MAX_CONNECTIONS)
        import resource

        if self.hard != resource.RLIM_INFINITY and self.hard > channel.files_needed(1):
            self.assertLessEqual(channel.files_needed(web.max_connections), self.hard)

    def test_values(self):
        web = parse("--max-connections", "10", "--header-timeout", "2.5", "--idle-timeout", "30", self.dir).config.web
        self.assertEqual((web.max_connections, web.header_timeout, web.idle_timeout), (10, 2.5, 30.0))

    def test_bad_values(self):
        for args in (["--max-connections", "0"], ["--max-connections", "many"], ["--header-timeout", "0"],
                     ["--idle-timeout", "-1"], ["--idle-timeout", "soon"]):
            e = self.assertRaises(usage.UsageError, parse, *args, self.dir)
            self.assertIn(args[0], str(e))

    def test_over_the_open_file_limit(self):
        """More connections than the hard open-file limit can hold is a clear error naming LimitNOFILE."""
        import resource

        if self.hard == resource.RLIM_INFINITY:
            raise self.skipTest("no hard limit of open files here")
        e = self.assertRaises(usage.UsageError, parse, "--max-connections", str(self.hard), self.dir)
        self.assertIn("LimitNOFILE", str(e))

    def test_site_gets_them(self):
        service = tap.makeService(parse("--max-connections", "7", "--header-timeout", "3", "--idle-timeout", "40",
                                        "--port", "tcp:0", self.dir), MemoryReactorClock())
        site = service.getServiceNamed("web-0").factory
        self.assertEqual(site.connection_limit.maximum, 7)
        self.assertEqual((site.header_timeout, site.timeOut), (3.0, 40.0))
