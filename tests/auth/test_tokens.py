"""API tokens: their form, the file, the checks through Logins, scopes and the command (no server)."""

from __future__ import annotations

import json
import os

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.task import Clock as ReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pypid.auth import tokencli, tokens
from pypid.auth.htpasswd import HtpasswdChecker
from pypid.auth.limiter import FailureLimiter
from pypid.auth.logins import Logins, TooManyFailures
from pypid.auth.tokens import (
    MALFORMED,
    TOKEN_LENGTH,
    TokenRefused,
    Tokens,
    TokenUses,
    TokenUser,
    new_token,
    parse_expiry,
    scope_refusal,
    split_token,
)
from pypid.threads import immediate
from pypid.web.scopes import project_of
from tests.auth.test_htpasswd import Clock, bcrypt_hash, write
from tests.auth.test_logins import Counting

DAY = 86400.0


class FormTests(SynchronousTestCase):
    def test_new_tokens_are_recognisable_and_checked(self):
        token, token_id, digest = new_token()
        self.assertTrue(token.startswith("pypid-"))
        self.assertEqual(len(token), TOKEN_LENGTH)
        self.assertEqual(split_token(token)[0], token_id)
        self.assertEqual(tokens.secret_hash(split_token(token)[1]), digest)
        self.assertNotEqual(new_token()[0], token)

    def test_a_mistyped_token_is_malformed(self):
        token = new_token()[0]
        flipped = token[:20] + ("a" if token[20] != "a" else "b") + token[21:]
        for bad in (flipped, token[:-1], token + "a", token.upper(), "pypid-" + "!" * (TOKEN_LENGTH - 6), "",
                    "ghp_" + token[4:]):
            self.assertIsNone(split_token(bad), bad)

    def test_expiry(self):
        now = 1_800_000_000.0
        self.assertEqual(parse_expiry("30d", now), now + 30 * DAY)
        self.assertEqual(parse_expiry("12h", now), now + 12 * 3600)
        self.assertEqual(parse_expiry("2w", now), now + 14 * DAY)
        self.assertIsNone(parse_expiry("never", now))
        # The end of that day (UTC): 2027-01-16T00:00Z.
        self.assertEqual(parse_expiry("2027-01-15", now), 1_800_057_600.0)
        for bad in ("0d", "soon", "2020-01-01", "5y"):
            with self.assertRaises(ValueError):
                parse_expiry(bad, now)

    def test_scope(self):
        token = tokens.Token("a" * 12, "ci", "alice", ("acme-*",), frozenset({"upload", "read"}), 0.0, None, None,
                             "0" * 64)
        user = TokenUser(token)
        self.assertEqual((user, user == "alice", user.token.name), ("alice", True, "ci"))
        self.assertIsNone(scope_refusal(user, "acme-tools", "upload"))
        self.assertIn("may not remove from acme-tools", scope_refusal(user, "acme-tools", "remove"))
        self.assertIn("may not upload to other (its scope: upload,read on acme-*)",
                      scope_refusal(user, "other", "upload"))
        self.assertIn("the index as a whole", scope_refusal(user, None, "read"))
        self.assertIsNone(scope_refusal("alice", "other", "remove"), "a password login has no scope")

    def test_projects_of_reads(self):
        self.assertEqual(project_of(b"simple", [b"Acme.Tools", b""]), "acme-tools")
        self.assertIsNone(project_of(b"simple", [b""]))
        self.assertEqual(project_of(b"pypi", [b"acme-tools", b"1.0", b"json"]), "acme-tools")
        self.assertEqual(project_of(b"packages", [b"sub", b"acme_tools-1.0-py3-none-any.whl.metadata"]),
                         "acme-tools")
        self.assertEqual(project_of(b"packages", [b"acme_tools-1.0.tar.gz.asc"]), "acme-tools")
        self.assertIsNone(project_of(b"packages", [b"README"]))
        self.assertIsNone(project_of(b"search", [b""]))
        self.assertIsNone(project_of(b"simple", [b"\xff"]))


class ChecksTests(SynchronousTestCase):
    def setUp(self):
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.passwords = os.path.join(self.dir, "htpasswd")
        write(self.passwords, ["alice:" + bcrypt_hash("a-pass"), "bob:" + bcrypt_hash("b-pass")])
        self.path = os.path.join(self.dir, "tokens")
        self.clock = Clock()
        self.clock.now = 1_800_000_000.0
        self.threads = Counting()
        checker = HtpasswdChecker(self.passwords, self.threads, clock=self.clock)
        self.tokens = Tokens(self.path, self.threads, clock=self.clock, user_exists=checker.has_user,
                             users_signature=checker.file_signature)
        self.logins = Logins(checker, FailureLimiter(self.clock, failures=3, period=30.0), tokens=self.tokens)
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def create(self, **kwargs):
        options = dict(user="alice", projects=[], actions=None, expires=None, name=None, now=self.clock.now)
        options.update(kwargs)
        return tokencli.create(self.path, **options)

    def login(self, token, client="192.0.2.1"):
        return self.logins.login(client, b"__token__", token.encode() if isinstance(token, str) else token)

    def refusal(self, d) -> str:
        return self.failureResultOf(d, TokenRefused).value.client_message

    def audit(self):
        return [e for e in self.events if e.get("log_namespace") == "pypid.audit"]

    def test_a_token_logs_in_as_its_user(self):
        token, record = self.create(name="ci", projects=["Acme_*"], actions="upload,yank")
        user = self.successResultOf(self.login(token))
        self.assertEqual((user, user.token.name, user.token.projects), ("alice", "ci", ("acme-*",)))
        self.assertEqual(self.threads.calls, 1)
        # Again: remembered, checked on the reactor thread.
        self.assertEqual(self.successResultOf(self.login(token)).token.id, record.id)
        self.assertEqual(self.threads.calls, 1)

    def test_the_file_keeps_no_secret(self):
        token, record = self.create()
        text = open(self.path).read()
        self.assertNotIn(split_token(token)[1], text)
        self.assertNotIn(token, text)
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o640)
        self.assertEqual(json.loads(text.splitlines()[-1])["sha256"], record.sha256)

    def test_refusals_say_why_without_telling_what_exists(self):
        token, _ = self.create(name="ci")
        other_id = new_token()[0]
        self.assertEqual(self.refusal(self.login("pypid-short")), MALFORMED)
        self.assertEqual(self.refusal(self.login(b"\xff" * 65)), MALFORMED)
        unknown = self.refusal(self.login(other_id))
        # The right id with a wrong secret reads exactly like an unknown token.
        token_id, _ = split_token(token)
        body = token_id + "a" * tokens.SECRET_LENGTH
        wrong_secret = "pypid-" + body + tokens._checksum(body)
        self.assertEqual(self.refusal(self.login(wrong_secret, "192.0.2.9")), unknown)
        self.assertEqual(unknown, "Unauthorized: invalid API token.")

    def test_revoked_expired_and_removed_users(self):
        token, _ = self.create(name="ci", expires="1d")
        self.successResultOf(self.login(token))
        tokencli.revoke(self.path, "ci", now=self.clock.now)
        self.assertEqual(self.refusal(self.login(token)), "Unauthorized: this API token ('ci') was revoked.")
        later, _ = self.create(name="later", expires="1d")
        self.successResultOf(self.login(later, "192.0.2.2"))
        self.clock.now += DAY
        self.assertIn("expired on", self.refusal(self.login(later, "192.0.2.2")))
        bobs, _ = self.create(user="bob", name="bobs")
        self.successResultOf(self.login(bobs, "192.0.2.3"))
        write(self.passwords, ["alice:" + bcrypt_hash("a-pass")])
        self.assertIn("can no longer log in", self.refusal(self.login(bobs, "192.0.2.3")))

    def test_failures_share_the_limit_of_passwords(self):
        token, _ = self.create()
        self.failureResultOf(self.login("pypid-wrong"), UnauthorizedLogin)
        self.failureResultOf(self.logins.login("192.0.2.1", b"alice", b"wrong"), UnauthorizedLogin)
        self.failureResultOf(self.login(new_token()[0]), UnauthorizedLogin)
        self.failureResultOf(self.login(token), TooManyFailures)
        self.assertIn("login refused user=__token__ token=- client=192.0.2.1 service=http: malformed API token",
                      [formatted(e) for e in self.audit()][0])

    def test_without_tokens_file(self):
        checker = HtpasswdChecker(self.passwords, immediate, clock=self.clock)
        logins = Logins(checker, FailureLimiter(self.clock))
        message = self.failureResultOf(logins.login("h", b"__token__", b"x"), TokenRefused).value.client_message
        self.assertIn("takes no API tokens", message)

    def test_last_used_written_beside_the_file(self):
        token, record = self.create()
        self.successResultOf(self.login(token))
        reactor = ReactorClock()
        uses = TokenUses(self.tokens, reactor, immediate, interval=60)
        uses.startService()
        reactor.advance(60)
        used = tokens.read_last_used(self.path + ".last-used")
        self.assertEqual(used, {record.id: self.clock.now})
        rows = tokens.describe(tokens.TokenFile.read(self.path).tokens, used, self.clock.now)
        self.assertEqual(rows[1][7], "2027-01-15 08:00")
        self.successResultOf(uses.stopService())

    def test_an_unwritable_last_used_file_is_kept_in_memory(self):
        token, record = self.create()
        self.successResultOf(self.login(token))
        os.makedirs(self.path + ".last-used")
        self.assertIn("cannot record", self.tokens.flush_used())
        os.rmdir(self.path + ".last-used")
        self.assertIsNone(self.tokens.flush_used())
        self.assertIn(record.id, tokens.read_last_used(self.path + ".last-used"))


def formatted(event) -> str:
    from twisted.logger import formatEvent

    return formatEvent(event)


class CommandTests(SynchronousTestCase):
    def setUp(self):
        self.path = os.path.join(os.path.abspath(self.mktemp()))

    def test_create_list_revoke(self):
        token, record = tokencli.create(self.path, "alice", ["acme-*", "Tools_X"], "upload,remove", "30d", "ci")
        self.assertEqual((record.projects, sorted(record.actions)), (("acme-*", "tools-x"), ["remove", "upload"]))
        with self.assertRaises(tokencli.TokenCommandError):
            tokencli.create(self.path, "bob", [], None, None, "ci")
        for bad in (dict(projects=["a/b"]), dict(actions="upload,delete"), dict(expires="soon"),
                    dict(name="has space"), dict(user="a:b")):
            options = dict(user="bob", projects=[], actions=None, expires=None, name=None)
            options.update(bad)
            with self.assertRaises(tokencli.TokenCommandError):
                tokencli.create(self.path, **options)
        self.assertEqual(tokencli.revoke(self.path, record.id).name, "ci")
        with self.assertRaises(tokencli.TokenCommandError):
            tokencli.revoke(self.path, "ci")
        with self.assertRaises(tokencli.TokenCommandError):
            tokencli.revoke(self.path, "nobody")
        # A revoked token's name may be used again.
        tokencli.create(self.path, "alice", [], None, None, "ci")

    def test_comments_and_hand_edits_survive(self):
        with open(self.path, "w") as f:
            f.write("# mine\n")
        _, record = tokencli.create(self.path, "alice", [], None, None, "ci")
        tokencli.revoke(self.path, "ci")
        lines = open(self.path).read().splitlines()
        self.assertEqual(lines[0], "# mine")
        self.assertIsNotNone(json.loads(lines[1])["revoked"])
        with open(self.path, "a") as f:
            f.write("{broken\n")
        with self.assertRaises(tokencli.TokenCommandError):
            tokencli.create(self.path, "alice", [], None, None, "x")
