"""
An upload received as it arrives: the writer (in order, in threads, the
sender paused past the high-water mark), the form receiver, the budget.
Pure fakes: the memory store's staging, threads held until the test runs them.
"""

from __future__ import annotations

import hashlib

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pypid.feed import incoming
from pypid.feed.checks import UploadError
from pypid.feed.incoming import HIGH_WATER, LOW_WATER, FormReceiver, SpoolBudget, StagedWriter
from pypid.store.interfaces import StoreFull
from pypid.store.memory import MemoryStore
from pypid.threads import immediate
from tests.uploadhelp import form_fields, multipart


class HeldThreads:
    """A Threads that holds each piece of work until the test runs it."""

    def __init__(self):
        self.work: list[tuple[Deferred, object, tuple]] = []

    def __call__(self, f, *args):
        d: Deferred = Deferred()
        self.work.append((d, f, args))
        return d

    def run_one(self):
        d, f, args = self.work.pop(0)
        try:
            result = f(*args)
        except BaseException:
            d.errback(Failure())
        else:
            d.callback(result)

    def run_all(self):
        while self.work:
            self.run_one()


class WriterTests(SynchronousTestCase):
    def setUp(self):
        self.threads = HeldThreads()
        self.staged = MemoryStore().stage()
        self.events: list[str] = []
        self.writer = StagedWriter(self.staged, self.threads,
                                   lambda: self.events.append("pause"), lambda: self.events.append("resume"))

    def test_in_order_one_job_at_a_time(self):
        """What arrives while a write runs waits for it, and goes in one job after it; finish waits for all."""
        self.writer.write(b"one ")
        self.assertEqual(len(self.threads.work), 1)
        self.writer.write(b"two ")
        self.writer.write(b"three")
        self.assertEqual(len(self.threads.work), 1, "one job at a time")
        d = self.writer.finish()
        self.writer.write(b"too late")
        self.assertNoResult(d)
        self.threads.run_all()
        digests = self.successResultOf(d)
        self.assertEqual(self.staged.data, b"one two three")
        self.assertEqual(digests["sha256"], hashlib.sha256(b"one two three").hexdigest())

    def test_sender_paused_past_the_high_water_mark(self):
        chunk = b"x" * (64 * 1024)
        for _ in range(HIGH_WATER // len(chunk) + 1):
            self.writer.write(chunk)
        self.assertEqual(self.events, ["pause"])
        self.assertGreater(self.writer.waiting, HIGH_WATER)
        self.threads.run_one()  # the first chunk
        self.assertEqual(self.events, ["pause"], "still over the low-water mark")
        self.threads.run_one()  # all the others, in one job
        self.assertEqual(self.events, ["pause", "resume"])
        self.assertLessEqual(self.writer.waiting, LOW_WATER)
        d = self.writer.finish()
        self.threads.run_all()
        self.successResultOf(d)
        self.assertEqual(len(self.staged.data), (HIGH_WATER // len(chunk) + 1) * len(chunk))

    def test_a_full_store_is_kept_and_the_rest_dropped(self):
        staged = MemoryStore(room=10).stage()
        writer = StagedWriter(staged, immediate)
        writer.write(b"12345678")
        writer.write(b"too much")
        self.assertIsInstance(writer.error.value, StoreFull)
        writer.write(b"more")
        self.failureResultOf(writer.finish(), StoreFull)

    def test_abort_after_the_running_write(self):
        self.writer.write(b"one")
        self.writer.write(b"two")
        d = self.writer.abort()
        self.assertNoResult(d)
        self.threads.run_all()
        self.successResultOf(d)
        self.assertRaises(ValueError, lambda: self.staged.data)


class ReceiverTests(SynchronousTestCase):
    def receiver(self, body_ctype, store=None):
        store = store or MemoryStore()
        return FormReceiver(body_ctype[1].encode(), store.stage(), immediate)

    def test_form_and_file_in_any_chunks(self):
        name, data = "demo-1.0-py3-none-any.whl", bytes(range(256)) * 2000
        body, ctype = multipart(form_fields(name, data) + [("gpg_signature", name + ".asc", b"sig")])
        for size in (1, 7, 4096, len(body)):
            receiver = self.receiver((body, ctype))
            for i in range(0, len(body), size):
                receiver.feed(body[i:i + size])
            received = self.successResultOf(receiver.finish())
            self.assertEqual(received.content.data, data)
            self.assertEqual(received.digests["sha256"], hashlib.sha256(data).hexdigest())
            self.assertEqual((received.form.fields["name"], received.signature), (["demo"], b"sig"))

    def test_malformed_or_cut_short_is_400_and_nothing_kept(self):
        body, ctype = multipart(form_fields("demo-1.0-py3-none-any.whl", b"x" * 1000))
        for bad in (body[:-20], body.replace(b"Content-Disposition", b"Content-Dispositio", 1)):
            receiver = self.receiver((bad, ctype))
            receiver.feed(bad)
            failure = self.failureResultOf(receiver.finish(), UploadError)
            self.assertEqual(failure.value.code, 400)
            self.assertRaises(ValueError, lambda: receiver.staged.data)
        # Not even a boundary: refused the same way.
        receiver = FormReceiver(b"multipart/form-data", MemoryStore().stage(), immediate)
        receiver.feed(body)
        self.assertEqual(self.failureResultOf(receiver.finish(), UploadError).value.code, 400)

    def test_no_room_is_507(self):
        body, ctype = multipart(form_fields("demo-1.0-py3-none-any.whl", b"x" * 1000))
        receiver = self.receiver((body, ctype), MemoryStore(room=500))
        receiver.feed(body)
        failure = self.failureResultOf(receiver.finish(), UploadError)
        self.assertEqual(failure.value.code, 507)
        self.assertIn("Insufficient Storage", failure.value.message)

    def test_form_without_a_file_stages_nothing(self):
        body, ctype = multipart([(":action", None, b"submit"), ("name", None, b"demo")])
        receiver = self.receiver((body, ctype))
        receiver.feed(body)
        received = self.successResultOf(receiver.finish())
        self.assertEqual((received.content, received.form.fields[":action"]), (None, ["submit"]))

    def test_receive_a_whole_body(self):
        body, ctype = multipart(form_fields("demo-1.0-py3-none-any.whl", b"abc"))
        import io

        received = self.successResultOf(incoming.receive(io.BytesIO(body), ctype.encode(),
                                                         MemoryStore().stage(), immediate))
        self.assertEqual(received.content.data, b"abc")


class BudgetTests(SynchronousTestCase):
    def test_reserve_and_release(self):
        budget = SpoolBudget(100)
        self.assertTrue(budget.reserve(60))
        self.assertFalse(budget.reserve(41))
        self.assertEqual(budget.held, 60)
        budget.release(60)
        self.assertTrue(budget.reserve(100))
        self.assertTrue(SpoolBudget(None).reserve(10 ** 15))

    def test_refusal_says_sizes_in_a_unit_that_fits(self):
        """A small --max-spool is told in KiB (not "0.0 MiB of 0.0 MiB"), a large one in MiB or GiB."""
        small = SpoolBudget(48 * 1024)
        self.assertTrue(small.reserve(1536))
        self.assertEqual(
            small.refusal(),
            "Insufficient Storage: uploads in flight already hold 1.5 KiB of this server's 48.0 KiB "
            "for them (--max-spool); try again shortly.")
        empty = SpoolBudget(48 * 1024).refusal()
        self.assertIn("already hold 0 bytes of this server's 48.0 KiB for them", empty)
        large = SpoolBudget(2 * 2**30)
        self.assertTrue(large.reserve(300 * 2**20))
        self.assertIn("already hold 300.0 MiB of this server's 2.0 GiB for them", large.refusal())
