"""The directory store's yank file: durable, editable, read again when it changes."""

from __future__ import annotations

import os

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from watchdog.events import FileCreatedEvent, FileMovedEvent

from pypid.index.yanks import HEADER
from pypid.store.directory.store import DirectoryStore
from pypid.store.directory.watch import classify
from pypid.store.directory.yankfile import YANKS_FILE
from pypid.testing import sdist_bytes, wheel_bytes
from pypid.threads import immediate

WHEEL = wheel_bytes("Demo_Pkg", "1.0")
SDIST = sdist_bytes("Demo_Pkg", "1.0")


class YankFileTests(SynchronousTestCase):
    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        for name, data in (WHEEL, SDIST):
            with open(os.path.join(self.root, name), "wb") as f:
                f.write(data)
        self.path = os.path.join(self.root, YANKS_FILE)
        self.logged: list[dict] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def started(self) -> DirectoryStore:
        store = DirectoryStore([self.root], "sha256", immediate)
        self.successResultOf(store.rescan())
        return store

    def yanked(self, store) -> dict:
        return {key: dict(entries) for key, entries in store.snapshot.yanks.items()}

    def write(self, text: str) -> None:
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(text)

    def read(self) -> str:
        with open(self.path, encoding="utf-8") as f:
            return f.read()

    def test_a_yank_survives_a_restart(self):
        store = self.started()
        self.successResultOf(store.setYanked([store.snapshot.files[WHEEL[0]]], "broken build"))
        self.assertEqual(self.read(), HEADER + f"{WHEEL[0]} broken build\n")
        again = self.started()
        self.assertEqual(self.yanked(again), {"demo-pkg": {WHEEL[0]: "broken build"}})

    def test_yanks_are_there_when_the_store_is_ready(self):
        self.write(f"{SDIST[0]}\n")
        store = DirectoryStore([self.root], "sha256", immediate)
        seen = []
        store.whenReady().addCallback(lambda _: seen.append(self.yanked(store)))
        self.successResultOf(store.rescan())
        self.assertEqual(seen, [{"demo-pkg": {SDIST[0]: ""}}])

    def test_rescans_keep_yanks(self):
        store = self.started()
        self.successResultOf(store.setYanked([store.snapshot.files[SDIST[0]]], ""))
        self.successResultOf(store.rescan())
        self.successResultOf(store.refresh([os.path.join(self.root, SDIST[0])]))
        self.assertEqual(self.yanked(store), {"demo-pkg": {SDIST[0]: ""}})

    def test_a_file_that_goes_and_comes_back_is_still_yanked(self):
        """Deleted and written again behind pypid's back (a git checkout): the yank stays."""
        store = self.started()
        self.successResultOf(store.setYanked([store.snapshot.files[WHEEL[0]]], "no"))
        os.unlink(os.path.join(self.root, WHEEL[0]))
        self.successResultOf(store.refresh([os.path.join(self.root, WHEEL[0])]))
        self.assertNotIn(WHEEL[0], store.snapshot.files)
        os.makedirs(os.path.join(self.root, "moved"))
        with open(os.path.join(self.root, "moved", WHEEL[0]), "wb") as f:
            f.write(WHEEL[1])
        self.successResultOf(store.rescan())
        self.assertEqual(store.snapshot.yank_reason(store.snapshot.files["moved/" + WHEEL[0]]), "no")

    def test_an_edit_is_read_when_the_watcher_names_the_file(self):
        store = self.started()
        seen = []
        store.subscribe(lambda snapshot, changed: seen.append(changed))
        self.write(f"# by hand\n{WHEEL[0]}   not for production  \n")
        self.successResultOf(store.refresh([self.path]))
        self.assertEqual(self.yanked(store), {"demo-pkg": {WHEEL[0]: "not for production"}})
        self.assertEqual(seen, [frozenset({"demo-pkg"})])
        os.unlink(self.path)
        self.successResultOf(store.rescan())
        self.assertEqual(self.yanked(store), {})

    def test_a_rewrite_keeps_comments_and_other_lines(self):
        self.write(f"# kept\n\n{SDIST[0]} first\n# also kept\n{WHEEL[0]} second\n{WHEEL[0]} last wins\n")
        store = self.started()
        self.assertEqual(self.yanked(store), {"demo-pkg": {SDIST[0]: "first", WHEEL[0]: "last wins"}})
        self.successResultOf(store.setYanked([store.snapshot.files[WHEEL[0]]], "new reason"))
        self.assertEqual(self.read(), f"# kept\n\n{SDIST[0]} first\n# also kept\n{WHEEL[0]} new reason\n")
        self.successResultOf(store.setYanked([store.snapshot.files[SDIST[0]]], None))
        self.assertEqual(self.read(), f"# kept\n\n# also kept\n{WHEEL[0]} new reason\n")

    def test_lines_that_name_no_file_are_ignored_and_logged(self):
        self.write(f"not-a-file.txt reason\n{WHEEL[0]}\n")
        store = self.started()
        self.assertEqual(self.yanked(store), {"demo-pkg": {WHEEL[0]: ""}})
        text = " ".join(str(event.get("line")) for event in self.logged)
        self.assertIn("not-a-file.txt", text)

    def test_an_unreadable_file_keeps_the_yanks(self):
        store = self.started()
        self.successResultOf(store.setYanked([store.snapshot.files[WHEEL[0]]], "kept"))
        with open(self.path, "wb") as f:
            f.write(b"\xff\xfe not utf-8\n")
        self.successResultOf(store.rescan())
        self.assertEqual(self.yanked(store), {"demo-pkg": {WHEEL[0]: "kept"}})
        self.assertTrue(any("yanks stay as they were" in str(event.get("log_format")) for event in self.logged))
        # And a yank through pypid is refused rather than losing the file.
        self.failureResultOf(store.setYanked([store.snapshot.files[SDIST[0]]], "x"), OSError)

    def test_remove_rewrites_the_file(self):
        store = self.started()
        files = list(store.snapshot.get("demo-pkg").files)
        self.successResultOf(store.setYanked(files, "both"))
        self.successResultOf(store.remove([store.snapshot.files[WHEEL[0]]]))
        self.assertEqual(self.read(), HEADER + f"{SDIST[0]} both\n")

    def test_a_new_file_gets_the_mode_of_landed_files(self):
        store = self.started()
        self.successResultOf(store.setYanked([store.snapshot.files[WHEEL[0]]], ""))
        from pypid.store.directory.landing import FILE_MODE

        self.assertEqual(os.stat(self.path).st_mode & 0o777, FILE_MODE)

    def test_the_watcher_reports_the_file(self):
        root = self.root
        self.assertEqual(classify(FileCreatedEvent(self.path), root), [(self.path, False)])
        temp = os.path.join(root, ".pypid-yanked-x.tmp")
        self.assertEqual(classify(FileMovedEvent(temp, self.path), root), [(self.path, False)])
        self.assertEqual(classify(FileCreatedEvent(temp), root), [])
        self.assertEqual(classify(FileCreatedEvent(os.path.join(root, "sub", YANKS_FILE)), root), [])


class LateThreads:
    """Runs the work at once, but hands each result back only when the test says."""

    def __init__(self):
        self.held = []
        self.hold = False

    def __call__(self, f, *args):
        from twisted.internet.defer import Deferred, maybeDeferred

        if not self.hold:
            return maybeDeferred(f, *args)
        result = f(*args)
        d = Deferred()
        self.held.append((d, result))
        return d


class OrderTests(SynchronousTestCase):
    def test_answers_coming_back_out_of_order(self):
        """Two yanks whose writes come back in the other order: the snapshot ends as the file does."""
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        for name, data in (WHEEL, SDIST):
            with open(os.path.join(root, name), "wb") as f:
                f.write(data)
        threads = LateThreads()
        store = DirectoryStore([root], "sha256", threads)
        self.successResultOf(store.rescan())
        threads.hold = True
        first = store.setYanked([store.snapshot.files[WHEEL[0]]], "one")
        second = store.setYanked([store.snapshot.files[SDIST[0]]], "two")
        (d1, r1), (d2, r2) = threads.held
        d2.callback(r2)
        d1.callback(r1)
        self.assertEqual(self.successResultOf(first), [WHEEL[0]])
        self.assertEqual(self.successResultOf(second), [SDIST[0]])
        self.assertEqual(dict(store.snapshot.yanked("demo-pkg")), {WHEEL[0]: "one", SDIST[0]: "two"})
