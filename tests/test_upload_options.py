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
        options = parse(self.dir)
        self.assertEqual(options["auth-actions"], {"update"})
        self.assertFalse(options["uploads"])
        self.assertIsNone(options["spool"])

    def test_passwords_enable_uploads(self):
        options = parse("-P", self.pw, self.dir)
        self.assertTrue(options["uploads"])
        self.assertEqual(options["spool"], os.path.join(self.dir, ".pypid-incoming"))
        self.assertFalse(os.path.exists(options["spool"]), "made when the service starts")
        options = parse("-P", self.pw, "-a", "update, download,LIST", self.dir)
        self.assertEqual(options["auth-actions"], {"update", "download", "list"})

    def test_open_index(self):
        options = parse("-P", ".", "-a", ".", self.dir)
        self.assertTrue(options["uploads"])
        self.assertEqual(options["auth-actions"], frozenset())
        self.assertIsNone(options["passwords"])

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
        self.assertEqual(parse(self.dir)["max-upload-size"], 1024 ** 3)
        self.assertEqual(parse("--max-upload-size", "500M", self.dir)["max-upload-size"], 500 * 1024 ** 2)
        self.assertEqual(parse("--max-upload-size", "2GiB", self.dir)["max-upload-size"], 2 * 1024 ** 3)
        self.assertEqual(parse("--max-upload-size", "12345", self.dir)["max-upload-size"], 12345)

    def test_overwrite_and_acl_accepted(self):
        acl = os.path.join(self.dir, "..", "acl")
        with open(acl, "w") as f:
            f.write("* = alice\n")
        options = parse("-P", self.pw, "--acl", acl, "--overwrite", self.dir)
        self.assertTrue(options["overwrite"])
        self.assertIsNotNone(options["acl-file"])
        with open(acl, "w") as f:
            f.write("broken\n")
        self.assertRaises(usage.UsageError, parse, "-P", self.pw, "--acl", acl, self.dir)
