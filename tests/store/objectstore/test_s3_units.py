"""
The S3 client's pure parts: reading C{--store}/C{--s3-endpoint}/C{--s3-region},
URLs as SigV4 wants them, and the credential refresh that keeps signing off
the threads. (Everything that talks to a store is in
tests/process/test_s3_client.py, against a real SeaweedFS.)
"""

from __future__ import annotations

import datetime

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

try:
    import botocore  # noqa: F401
except ImportError:  # pragma: no cover - scripts/test installs the extra
    botocore = None

from pypid.store.objectstore.s3 import CredentialSource, S3ConfigError, S3Location


class LocationTests(SynchronousTestCase):
    def test_custom_endpoint_is_path_style(self):
        loc = S3Location.from_options("s3://pypid/team/dists/", "http://127.0.0.1:8333")
        self.assertEqual((loc.bucket, loc.prefix, loc.endpoint, loc.region, loc.path_style),
                         ("pypid", "team/dists/", "http://127.0.0.1:8333", "us-east-1", True))
        self.assertEqual(loc.object_url("Demo Pkg/x+y=1~2.whl"),
                         "http://127.0.0.1:8333/pypid/team/dists/Demo%20Pkg/x%2By%3D1~2.whl")
        self.assertEqual(loc.bucket_url([("list-type", "2"), ("prefix", "team/dists/")]),
                         "http://127.0.0.1:8333/pypid/?list-type=2&prefix=team%2Fdists%2F")

    def test_no_prefix(self):
        loc = S3Location.from_options("s3://pypid", "https://store.example:9000/", "eu-west-3")
        self.assertEqual((loc.prefix, loc.endpoint, loc.region), ("", "https://store.example:9000", "eu-west-3"))
        self.assertEqual(loc.object_url("é.whl"), "https://store.example:9000/pypid/%C3%A9.whl")

    def test_aws_is_virtual_hosted_in_its_region(self):
        loc = S3Location.from_options("s3://my-bucket/p", region="eu-central-1")
        self.assertEqual(loc.object_url("a.whl"), "https://my-bucket.s3.eu-central-1.amazonaws.com/p/a.whl")
        dotted = S3Location.from_options("s3://my.bucket/p", region="eu-central-1")
        self.assertEqual(dotted.object_url("a.whl"), "https://s3.eu-central-1.amazonaws.com/my.bucket/p/a.whl")

    def test_aws_region_left_for_the_configuration(self):
        loc = S3Location.from_options("s3://my-bucket")
        self.assertIsNone(loc.region)
        self.assertEqual(loc.for_aws("ap-south-1").object_url("k"), "https://my-bucket.s3.ap-south-1.amazonaws.com/k")

    def test_bad_values_are_one_line_each(self):
        cases = [
            ("http://pypid/x", None, None, "--store must look like s3://BUCKET/PREFIX, not 'http://pypid/x'"),
            ("s3:///x", None, None, "--store must look like s3://BUCKET/PREFIX, not 's3:///x'"),
            ("s3://Upper_Case", None, None, "'Upper_Case' is not a valid bucket name (3-63 lower-case letters, "
                                            "digits, '.' and '-')"),
            ("s3://ab", None, None, "'ab' is not a valid bucket name (3-63 lower-case letters, digits, '.' and '-')"),
            ("s3://pypid", "localhost:9000", None,
             "--s3-endpoint must be an http:// or https:// URL of a host (and port), not 'localhost:9000'"),
            ("s3://pypid", "http://h:9000/path", None,
             "--s3-endpoint must be an http:// or https:// URL of a host (and port), not 'http://h:9000/path'"),
            ("s3://pypid", "http://user:pw@h:9000", None,
             "--s3-endpoint must be an http:// or https:// URL of a host (and port), not 'http://user:pw@h:9000'"),
            ("s3://pypid", "http://h:99999", None, "--s3-endpoint 'http://h:99999' has an invalid port"),
            ("s3://pypid", None, "EU West", "--s3-region 'EU West' is not a region name"),
        ]
        for store, endpoint, region, line in cases:
            with self.assertRaises(S3ConfigError) as caught:
                S3Location.from_options(store, endpoint, region)
            self.assertEqual(str(caught.exception), line)


class ThreadLog:
    """Runs nothing at once: records calls, fired by hand."""

    def __init__(self):
        self.calls = []

    def __call__(self, f, *args):
        d = defer.Deferred()
        self.calls.append((f, args, d))
        return d

    def run(self):
        f, args, d = self.calls.pop(0)
        try:
            d.callback(f(*args))
        except Exception as e:
            d.errback(e)


class CredentialSourceTests(SynchronousTestCase):
    def setUp(self):
        if botocore is None:
            self.skipTest("botocore is not installed")

    def test_static_credentials_never_go_to_a_thread(self):
        from botocore.credentials import Credentials

        credentials = Credentials("AKID", "secret", method="env")
        clock, threads = Clock(), ThreadLog()
        source = CredentialSource(credentials, credentials.get_frozen_credentials(), clock, threads)
        clock.advance(3600)
        self.assertEqual(source.frozen().access_key, "AKID")
        self.assertEqual(threads.calls, [])
        self.assertEqual(source.method, "env")

    def test_expiring_credentials_are_refreshed_in_a_thread(self):
        from botocore.credentials import RefreshableCredentials

        issued = []

        def fetch():
            issued.append(1)
            expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)
            return {"access_key": f"AKID{len(issued)}", "secret_key": "s", "token": "t",
                    "expiry_time": expiry.isoformat()}

        credentials = RefreshableCredentials.create_from_metadata(fetch(), fetch, "iam-role")
        clock, threads = Clock(), ThreadLog()
        source = CredentialSource(credentials, credentials.get_frozen_credentials(), clock, threads)
        first = source.frozen().access_key
        self.assertEqual(threads.calls, [])
        clock.advance(61)
        # Signing goes on with the copy it has; the refresh runs in a thread.
        self.assertEqual(source.frozen().access_key, first)
        self.assertEqual(len(threads.calls), 1)
        source.frozen()
        self.assertEqual(len(threads.calls), 1)  # one refresh at a time
        threads.run()  # expiring within 15 minutes: botocore fetches anew
        self.assertNotEqual(source.frozen().access_key, first)
        self.assertEqual(source.method, "iam-role")
