"""The directory store's serial on disk: never back across restarts and rescans, changes while stopped found."""

import os
import shutil
import sqlite3

from twisted.trial.unittest import SynchronousTestCase

from pypid.index.changes import ADD, REMOVE, REMOVE_PROJECT, SYNC, Change
from pypid.store.directory.serials import FILENAME, ProjectRow, SerialBook
from pypid.store.directory.statecache import FILENAME as STATE_CACHE, StateCache
from pypid.store.directory.store import DirectoryStore
from pypid.testing import sdist_bytes, wheel_bytes, write_dist
from pypid.threads import immediate


class SerialBookTests(SynchronousTestCase):
    def setUp(self):
        self.state = os.path.abspath(self.mktemp())

    def book(self, **kwargs):
        book = SerialBook([self.state], **kwargs)
        self.addCleanup(book.close)
        return book

    def test_empty_book_is_fresh(self):
        stored = self.book().load()
        self.assertEqual((stored.last, stored.horizon, stored.projects, stored.fresh), (0, 0, {}, True))

    def test_records_survive_a_new_instance(self):
        book = self.book()
        book.record(1, [], {"a": ProjectRow(1, "fp-a")}, horizon=1)
        book.record(2, [Change(2, 5.0, ADD, "b", "B", "1.0", "b-1.0.tar.gz")], {"b": ProjectRow(2, "fp-b")})
        book.record(3, [Change(3, 6.0, REMOVE_PROJECT, "a", "a")], {"a": None})
        book.close()
        again = self.book()
        stored = again.load()
        self.assertEqual((stored.last, stored.horizon, stored.projects, stored.fresh), (3, 1, {"b": 2}, False))
        self.assertEqual(again.fingerprints(), {"b": "fp-b"})
        answer = again.since(1, last=3)
        self.assertTrue(answer.complete)
        self.assertEqual([c.serial for c in answer.changes], [2, 3])
        self.assertEqual(answer.changes[0], Change(2, 5.0, ADD, "b", "B", "1.0", "b-1.0.tar.gz"))

    def test_last_never_goes_back(self):
        book = self.book()
        book.record(7, [], {})
        book.record(5, [], {})
        self.assertEqual(book.load().last, 7)

    def test_log_is_bounded_and_the_horizon_moves(self):
        book = self.book(keep=10)
        for serial in range(1, 31):
            book.record(serial, [Change(serial, 0.0, ADD, "p", "p", "1", f"p-{serial}.tar.gz")], {})
        with sqlite3.connect(os.path.join(self.state, FILENAME)) as db:
            (rows,) = db.execute("SELECT count(*) FROM changes").fetchone()
        self.assertLessEqual(rows, 11)
        stored = book.load()
        self.assertEqual(stored.last, 30)
        self.assertGreaterEqual(stored.horizon, 19)
        self.assertFalse(book.since(5, last=30).complete, "beyond the horizon")
        recent = book.since(25, last=30)
        self.assertTrue(recent.complete)
        self.assertEqual([c.serial for c in recent.changes], [26, 27, 28, 29, 30])

    def test_unusable_directory_keeps_going_in_memory(self):
        blocker = os.path.abspath(self.mktemp())
        with open(blocker, "w") as f:
            f.write("a file, not a directory")
        book = SerialBook([os.path.join(blocker, "state")])
        self.assertTrue(book.load().fresh)
        book.record(1, [], {})
        self.assertFalse(book.since(0, last=1).complete)
        messages = book.messages()
        self.assertTrue(any("no usable state directory for the serial" in text for _, text in messages), messages)


class StoreSerialTests(SynchronousTestCase):
    """The store with its book, restarted over the same directory the way the daemon is."""

    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        self.state = os.path.join(self.root, ".pypid")

    def start(self):
        book = SerialBook([self.state])
        cache = StateCache([self.state])
        self.addCleanup(book.close)
        self.addCleanup(cache.close)
        store = DirectoryStore([self.root], "sha256", immediate, cache, serials=book)
        self.successResultOf(store.rescan())
        return store

    def add(self, built):
        return os.path.basename(write_dist(self.root, built))

    def test_first_start_numbers_what_is_there_then_each_change(self):
        self.add(wheel_bytes("alpha", "1.0"))
        self.add(wheel_bytes("beta", "1.0"))
        store = self.start()
        self.assertEqual(store.snapshot.serial, 1)
        self.assertEqual({k: p.serial for k, p in store.snapshot.projects.items()}, {"alpha": 1, "beta": 1})
        self.assertFalse(self.successResultOf(store.changelog(0)).complete,
                         "what was there at the first start is not logged file by file")
        name = self.add(sdist_bytes("alpha", "2.0"))
        self.successResultOf(store.refresh([os.path.join(self.root, name)]))
        self.assertEqual((store.snapshot.serial, store.snapshot.get("alpha").serial), (2, 2))
        answer = self.successResultOf(store.changelog(1))
        self.assertEqual([(c.serial, c.action, c.filename) for c in answer.changes], [(2, ADD, name)])
        self.assertTrue(answer.complete)

    def test_restart_and_rescan_keep_every_serial(self):
        self.add(wheel_bytes("alpha", "1.0"))
        store = self.start()
        for version in ("2.0", "3.0"):
            name = self.add(wheel_bytes("alpha", version))
            self.successResultOf(store.refresh([os.path.join(self.root, name)]))
        self.add(wheel_bytes("beta", "1.0"))
        self.successResultOf(store.rescan())
        self.assertEqual(store.snapshot.serial, 4)
        self.successResultOf(store.rescan())
        self.assertEqual(store.snapshot.serial, 4, "a rescan that finds nothing new is no change")
        before = {k: p.serial for k, p in store.snapshot.projects.items()}

        again = self.start()
        self.assertEqual(again.snapshot.serial, 4)
        self.assertEqual({k: p.serial for k, p in again.snapshot.projects.items()}, before)
        answer = self.successResultOf(again.changelog(1))
        self.assertEqual([c.serial for c in answer.changes], [2, 3, 4])
        self.assertTrue(answer.complete)
        self.assertFalse(self.successResultOf(again.changelog(9)).complete)

    def test_changes_while_stopped_take_a_new_serial_at_start(self):
        keep = self.add(wheel_bytes("steady", "1.0"))
        self.add(wheel_bytes("grows", "1.0"))
        gone = self.add(wheel_bytes("leaves", "1.0"))
        moved = self.add(wheel_bytes("moves", "1.0"))
        store = self.start()
        self.assertEqual(store.snapshot.serial, 1)
        # While pypid is not running: a file copied in, a project deleted, a file moved into a folder.
        self.add(sdist_bytes("grows", "2.0"))
        os.unlink(os.path.join(self.root, gone))
        os.makedirs(os.path.join(self.root, "sub"))
        shutil.move(os.path.join(self.root, moved), os.path.join(self.root, "sub", moved))

        again = self.start()
        self.assertEqual(again.snapshot.serial, 2)
        self.assertEqual({k: p.serial for k, p in again.snapshot.projects.items()},
                         {"steady": 1, "grows": 2, "moves": 2})
        answer = self.successResultOf(again.changelog(1))
        self.assertTrue(answer.complete)
        self.assertEqual(sorted((c.serial, c.action, c.project) for c in answer.changes), [
            (2, REMOVE_PROJECT, "leaves"), (2, SYNC, "grows"), (2, SYNC, "moves")])
        self.assertTrue(os.path.exists(os.path.join(self.root, keep)))

        # The next start finds nothing new.
        third = self.start()
        self.assertEqual(third.snapshot.serial, 2)

    def test_removal_is_logged(self):
        name = self.add(wheel_bytes("alpha", "1.0"))
        other = self.add(sdist_bytes("alpha", "1.0"))
        store = self.start()
        self.successResultOf(store.remove([store.snapshot.files[name]]))
        answer = self.successResultOf(store.changelog(1))
        self.assertEqual([(c.serial, c.action, c.filename) for c in answer.changes], [(2, REMOVE, name)])
        self.assertEqual(list(store.snapshot.files), [other])

    def test_serial_book_separate_from_the_state_cache(self):
        """The state cache may be thrown away; the serial is not in it."""
        self.add(wheel_bytes("alpha", "1.0"))
        store = self.start()
        name = self.add(wheel_bytes("alpha", "2.0"))
        self.successResultOf(store.refresh([os.path.join(self.root, name)]))
        self.assertTrue(os.path.exists(os.path.join(self.state, FILENAME)))
        self.assertIn(STATE_CACHE, os.listdir(self.state))
        for leftover in os.listdir(self.state):
            if leftover.startswith("cache.sqlite3"):
                os.unlink(os.path.join(self.state, leftover))
        self.assertEqual(self.start().snapshot.serial, 2)


class SerialBookFailureTests(SynchronousTestCase):
    def test_a_failing_disk_is_tried_again(self):
        """A write that fails (a full disk) is said once; the next change opens the book again."""
        state = os.path.abspath(self.mktemp())
        book = SerialBook([state])
        self.addCleanup(book.close)
        book.record(1, [], {}, horizon=1)
        book._db.execute("PRAGMA query_only = ON")  # the next write fails, as on a full disk
        book.record(2, [Change(2, 0.0, ADD, "p", "p", "1", "p-1.tar.gz")], {})
        errors = [text for level, text in book.messages() if level == "error"]
        self.assertEqual(len(errors), 1, errors)
        self.assertIsNone(book._db, "let go, to be opened again")
        book.record(3, [Change(3, 0.0, ADD, "p", "p", "2", "p-2.tar.gz")], {})
        self.assertEqual(book.load().last, 3)
        self.assertTrue(any("work again" in text for _, text in book.messages()))
        self.assertEqual([c.serial for c in book.since(1, last=3).changes], [3])


class YankSerialTests(StoreSerialTests):
    """A yank is a change of the index like an upload: numbered, logged and kept across restarts."""

    def test_yank_and_unyank_take_serials_logged_and_kept(self):
        from pypid.index.changes import UNYANK, YANK

        name = self.add(wheel_bytes("alpha", "1.0"))
        self.add(wheel_bytes("beta", "1.0"))
        store = self.start()
        self.assertEqual(store.snapshot.serial, 1)
        f = store.snapshot.files[name]
        self.successResultOf(store.setYanked([f], "broken build"))
        self.assertEqual((store.snapshot.serial, store.snapshot.get("alpha").serial,
                          store.snapshot.get("beta").serial), (2, 2, 1))
        self.successResultOf(store.setYanked([f], None))
        self.assertEqual(store.snapshot.get("alpha").serial, 3)
        answer = self.successResultOf(store.changelog(1))
        self.assertEqual([(c.serial, c.action, c.filename) for c in answer.changes],
                         [(2, YANK, name), (3, UNYANK, name)])
        again = self.start()
        self.assertEqual((again.snapshot.serial, again.snapshot.get("alpha").serial), (3, 3))
        self.assertEqual([c.serial for c in self.successResultOf(again.changelog(1)).changes], [2, 3])

    def test_a_restart_reading_the_yank_file_is_no_change(self):
        name = self.add(wheel_bytes("alpha", "1.0"))
        store = self.start()
        self.successResultOf(store.setYanked([store.snapshot.files[name]], "broken"))
        self.assertEqual(store.snapshot.serial, 2)
        again = self.start()
        self.assertEqual(again.snapshot.yank_reason(again.snapshot.files[name]), "broken")
        self.assertEqual((again.snapshot.serial, again.snapshot.get("alpha").serial), (2, 2),
                         "yanks read at start were there before: no new serial, mirrors fetch nothing")
