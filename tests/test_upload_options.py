"""pypiserver's -P/-a rules, --acl, --max-upload-size and --overwrite."""

from __future__ import annotations

import os

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from pypid import tap


def parse(*argv):
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


class AuthOptionTests(SynchronousTestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.pw = os.path.join(os.path.abspath(self.mktemp()))
        with open(self.pw, "w") as f:
            f.write("alice:{SHA}x\n")

    def test_default_is_read_only(self):
        config = parse(self.dir).config
        self.assertEqual(config.auth.actions, {"update"})
        self.assertFalse(config.auth.uploads)
        self.assertFalse(config.feed.uploads)
        self.assertIsNone(config.feed.spool)

    def test_passwords_enable_uploads(self):
        config = parse("-P", self.pw, self.dir).config
        self.assertTrue(config.feed.uploads)
        self.assertEqual(config.auth.passwords, self.pw)
        self.assertEqual(config.feed.spool, os.path.join(self.dir, ".pypid-incoming"))
        self.assertFalse(os.path.exists(config.feed.spool), "made when the service starts")
        config = parse("-P", self.pw, "-a", "update, download,LIST", self.dir).config
        self.assertEqual(config.auth.actions, {"update", "download", "list"})

    def test_open_index(self):
        config = parse("-P", ".", "-a", ".", self.dir).config
        self.assertTrue(config.feed.uploads)
        self.assertEqual(config.auth.actions, frozenset())
        self.assertIsNone(config.auth.passwords)

    def test_pypiserver_refusals(self):
        for argv, text in (
            (("-a", "."), "-P ."),
            (("-P", "."), "-a ."),
            (("-P", self.pw, "-a", "."), "-P ."),
            (("-a", "download"), "needs -P"),
            (("-a", "upload"), "update, download, list"),
            (("-P", self.pw + ".missing"), "cannot read"),
            (("--acl", self.pw), "--acl needs"),
            (("--max-upload-size", "lots"), "not a size"),
        ):
            e = self.assertRaises(usage.UsageError, parse, *argv, self.dir)
            self.assertIn(text, str(e), argv)

    def test_sizes(self):
        def size(*argv):
            return parse(*argv, self.dir).config.feed.max_upload_size

        self.assertEqual(size(), 1024 ** 3)
        self.assertEqual(size("--max-upload-size", "500M"), 500 * 1024 ** 2)
        self.assertEqual(size("--max-upload-size", "2GiB"), 2 * 1024 ** 3)
        self.assertEqual(size("--max-upload-size", "12345"), 12345)
        self.assertRaises(usage.UsageError, size, "--max-upload-size", "0")

    def test_overwrite_and_acl_accepted(self):
        acl = os.path.join(self.dir, "..", "acl")
        with open(acl, "w") as f:
            f.write("* = alice\n")
        config = parse("-P", self.pw, "--acl", acl, "--overwrite", self.dir).config
        self.assertTrue(config.feed.overwrite)
        self.assertEqual(config.auth.acl, os.path.abspath(acl))
        self.assertEqual(config.auth.owners, os.path.join(self.dir, ".pypid-owners"))
        with open(acl, "w") as f:
            f.write("broken\n")
        self.assertRaises(usage.UsageError, parse, "-P", self.pw, "--acl", acl, self.dir)
