"""The ACL format and its decisions (pure parsing; files in a temp dir)."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from pypid.auth.acl import AclError, AclFile, parse_acl, parse_owners

TEXT = """\
# comment
@team-a = alice bob   # trailing comment
@team-b = carol
Team_A.* other = @team-a
team-b-* = @team-b
open-* = *
"""


class ParseTests(SynchronousTestCase):
    def test_rules_and_groups(self):
        acl = parse_acl(TEXT)
        self.assertEqual(acl.matching("team-a-lib"), {"alice", "bob"})
        self.assertEqual(acl.matching("other"), {"alice", "bob"})
        self.assertEqual(acl.matching("team-b-x"), {"carol"})
        self.assertEqual(acl.matching("open-door"), {"*"})
        self.assertIsNone(acl.matching("nobody-s"))
        self.assertEqual(acl.unlisted, "nobody")

    def test_union_of_matching_rules(self):
        acl = parse_acl("a-* = alice\n*-b = bob\n")
        self.assertEqual(acl.matching("a-b"), {"alice", "bob"})

    def test_errors_name_the_line(self):
        for text, where in (("x\n", "line 1"), ("a = @nope\n", "line 1"), ("\n\n@g = @h\n", "line 3"),
                            ("unlisted-projects = sometimes\n", "line 1"), ("a =\n", "line 1"),
                            ("@ = x\n", "line 1")):
            e = self.assertRaises(AclError, parse_acl, text)
            self.assertIn(where, str(e))

    def test_owners(self):
        self.assertEqual(parse_owners("Foo_Bar = alice\n# x\n"), {"foo-bar": "alice"})
        self.assertRaises(AclError, parse_owners, "foo bar = alice\n")


class AclFileTests(SynchronousTestCase):
    def setUp(self):
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "acl")
        self.owners = os.path.join(self.dir, "owners")

    def write(self, text):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.path)

    def test_bad_file_at_start(self):
        self.write("nonsense\n")
        self.assertRaises(AclError, AclFile, self.path, self.owners)

    def test_first_uploader(self):
        self.write("unlisted-projects = first-uploader\nteam-* = carol\n")
        acl = AclFile(self.path, self.owners)
        self.assertTrue(acl.authorize("alice", "new", exists=False).claimed)
        self.assertTrue(acl.authorize("alice", "new", exists=True).allowed)
        self.assertFalse(acl.authorize("bob", "new", exists=True).allowed)
        self.assertFalse(acl.authorize("bob", "old", exists=True).allowed)
        self.assertFalse(acl.authorize("alice", "team-x", exists=False).allowed)
        with open(self.owners) as f:
            self.assertIn("new = alice\n", f.read())

    def test_shared_first_uploaders(self):
        """With replicas, claims go to the shared owners (first claim wins); the owners file still wins."""
        from pypid.store.interfaces import StoreUnavailable

        class Shared:
            def __init__(self):
                self.owners = {"taken": "carol"}
                self.away = False

            def owner(self, project):
                if self.away:
                    raise StoreUnavailable("the catalog is unavailable")
                return self.owners.get(project)

            def claim(self, project, user):
                return self.owners.setdefault(project, user)

        self.write("unlisted-projects = first-uploader\n")
        with open(self.owners, "w") as f:
            f.write("pinned = bob\n")
        shared = Shared()
        acl = AclFile(self.path, self.owners, shared)
        self.assertTrue(acl.authorize("alice", "new", exists=False).claimed)
        self.assertEqual(shared.owners["new"], "alice")
        self.assertEqual(acl.authorize("bob", "new", exists=True).reason, "new belongs to alice")
        self.assertEqual(acl.authorize("alice", "taken", exists=False).reason, "taken belongs to carol")
        self.assertEqual(acl.authorize("alice", "pinned", exists=False).reason, "pinned belongs to bob")
        with open(self.owners) as f:
            self.assertEqual(f.read(), "pinned = bob\n", "claims are not written to the file")
        # Another replica claimed it between the look-up and the claim: its owner wins.
        shared.owner = lambda project: None
        self.assertEqual(acl.authorize("bob", "taken", exists=False).reason, "taken belongs to carol")
        shared.away = True
        del shared.owner
        self.assertRaises(StoreUnavailable, acl.authorize, "alice", "other", exists=False)

    def test_owners_file_directive_and_anyone(self):
        self.write("unlisted-projects = first-uploader\nowners-file = own.txt\n")
        acl = AclFile(self.path, self.owners)
        acl.authorize("alice", "p", exists=False)
        self.assertTrue(os.path.exists(os.path.join(self.dir, "own.txt")))
        self.write("unlisted-projects = anyone\n")
        self.assertTrue(acl.authorize("zed", "q", exists=True).allowed)

    def test_broken_edit_fails_closed(self):
        self.write("* = alice\n")
        acl = AclFile(self.path, self.owners)
        self.assertTrue(acl.authorize("alice", "x", exists=True).allowed)
        self.write("* = alice\nbroken line\n")
        decision = acl.authorize("alice", "x", exists=True)
        self.assertFalse(decision.allowed)
        self.assertIn("line 2", decision.reason)
        self.write("* = alice\n")
        self.assertTrue(acl.authorize("alice", "x", exists=True).allowed)
