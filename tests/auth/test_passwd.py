"""pypid passwd: managing the htpasswd file."""

from __future__ import annotations

import io
import os
import stat

from twisted.cred.credentials import UsernamePassword
from twisted.trial.unittest import SynchronousTestCase

from pypid import cli

from pypid.auth import passwd
from pypid.auth.htpasswd import HtpasswdChecker


class PasswdTests(SynchronousTestCase):
    def setUp(self):
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "htpasswd")
        self.patch(passwd, "ROUNDS", 4)

    def run_cli(self, *args, stdin="", prompts=()):
        out, err = io.StringIO(), io.StringIO()
        answers = list(prompts)
        code = passwd.main(list(args), stdin=io.StringIO(stdin), stdout=out, stderr=err,
                           prompt=lambda _: answers.pop(0))
        return code, out.getvalue(), err.getvalue()

    def login(self, user, password):
        checker = HtpasswdChecker(self.path)
        d = checker.requestAvatarId(UsernamePassword(user.encode(), password.encode()))
        result = []
        d.addBoth(result.append)
        return result[0] == user

    def test_create_add_update_delete(self):
        code, out, err = self.run_cli("-c", "--password-stdin", self.path, "alice", stdin="s3cret\n")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("added user alice", out)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o640)
        with open(self.path) as f:
            self.assertTrue(f.read().startswith("alice:$2y$"))
        self.assertTrue(self.login("alice", "s3cret"))
        self.assertEqual(self.run_cli(self.path, "bob", prompts=["pw-b", "pw-b"])[0], 0)
        self.assertTrue(self.login("bob", "pw-b"))
        self.assertEqual(self.run_cli("--password-stdin", self.path, "alice", stdin="new\n")[0], 0)
        self.assertFalse(self.login("alice", "s3cret"))
        self.assertTrue(self.login("alice", "new"))
        self.assertEqual(self.run_cli("-D", self.path, "alice")[0], 0)
        self.assertFalse(self.login("alice", "new"))
        self.assertTrue(self.login("bob", "pw-b"))
        self.assertEqual([n for n in os.listdir(self.dir)], ["htpasswd"], "no temporary files left")

    def test_refusals(self):
        code, _, err = self.run_cli("--password-stdin", self.path, "alice", stdin="x\n")
        self.assertEqual(code, 1)
        self.assertIn("use -c", err)
        code, _, err = self.run_cli("-c", self.path, "alice", prompts=["a", "b"])
        self.assertEqual(code, 1)
        self.assertIn("do not match", err)
        code, _, err = self.run_cli("-c", "--password-stdin", self.path, "al:ice", stdin="x\n")
        self.assertIn("invalid user name", err)
        code, _, err = self.run_cli("-c", "--password-stdin", self.path, "alice", stdin="\n")
        self.assertIn("empty", err)
        self.assertFalse(os.path.exists(self.path))
        self.run_cli("-c", "--password-stdin", self.path, "alice", stdin="x\n")
        code, _, err = self.run_cli("-D", self.path, "zed")
        self.assertEqual(code, 1)
        self.assertIn("not in", err)

    def test_cli_dispatch(self):
        self.assertIn("passwd", cli.COMMANDS)
