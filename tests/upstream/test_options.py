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


def write_ca(path, names):
    """A PEM file of self-signed CA certificates, with text around them as bundles have."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    parts = []
    for name in names:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(1)
                .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        parts.append(f"# {name}\n".encode() + cert.public_bytes(serialization.Encoding.PEM))
    with open(path, "wb") as f:
        f.write(b"\n".join(parts))


class CABundleTests(SynchronousTestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def test_every_certificate_of_a_bundle(self):
        from pypid.upstream.client import load_ca_bundle

        bundle = os.path.join(self.dir, "bundle.pem")
        write_ca(bundle, ["first CA", "second CA", "third CA"])
        from cryptography import x509

        names = [x509.load_pem_x509_certificate(c.dumpPEM()).subject.rfc4514_string()
                 for c in load_ca_bundle(bundle)]
        self.assertEqual(names, ["CN=first CA", "CN=second CA", "CN=third CA"])
        self.assertEqual(fallback("--fallback-url", UP, "--upstream-ca", bundle, self.dir).ca_file, bundle)

    def test_unreadable_or_empty_is_refused_in_one_line(self):
        empty = os.path.join(self.dir, "empty.pem")
        open(empty, "w").close()
        junk = os.path.join(self.dir, "junk.pem")
        with open(junk, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        for path, words in ((empty, "holds no PEM certificate"), (junk, "certificate 1 cannot be read"),
                            (os.path.join(self.dir, "missing.pem"), "cannot be read: No such file"),
                            (self.dir, "cannot be read: Is a directory")):
            with self.assertRaises(usage.UsageError) as caught:
                parse("--fallback-url", UP, "--upstream-ca", path, self.dir)
            message = str(caught.exception)
            self.assertIn(words, message)
            self.assertNotIn("\n", message)
