"""
The watcher's parts, deterministic: the debounce state machine on a Clock,
the event filter, the hand-over from watchdog's thread, and the service's
life cycle with a fake observer; and, with watchdog's real observer, that
reading a file raises no event at all.
"""

import errno
import os
import threading
import time

from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
)

from pypid.store.directory.debounce import Debouncer
from pypid.store.directory.rescans import IndexService
from pypid.threads import immediate
from pypid.store.directory.watch import BATCH, WatchService, classify, collapse, expand, schedule_options, take_batch

ROOT = "/srv/packages"


def p(*parts):
    return os.path.join(ROOT, *parts)


class FakeEvent:
    """Event types the installed watchdog may not have (opened, closed_no_write, attrib)."""

    def __init__(self, event_type, src_path, is_directory=False, dest_path=""):
        self.event_type = event_type
        self.src_path = src_path
        self.dest_path = dest_path
        self.is_directory = is_directory


class DebounceTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.fired = []
        self.debouncer = Debouncer(self.clock, 0.2, 1.0, lambda: self.fired.append(self.clock.seconds()))

    def test_single_poke_fires_after_quiet(self):
        self.debouncer.poke()
        self.clock.advance(0.19)
        self.assertEqual(self.fired, [])
        self.assertTrue(self.debouncer.pending)
        self.clock.advance(0.01)
        self.assertEqual(self.fired, [0.2])
        self.assertFalse(self.debouncer.pending)

    def test_trailing_edge(self):
        """Pokes within the quiet period push the call back: one call at the end."""
        for _ in range(4):
            self.debouncer.poke()
            self.clock.advance(0.1)
        self.assertEqual(self.fired, [])
        self.clock.advance(0.1)
        self.assertEqual(self.fired, [pytest_approx(0.5)])

    def test_max_delay_caps_a_long_burst(self):
        """A burst that never goes quiet is still handed over every max_delay seconds."""
        for _ in range(70):
            self.debouncer.poke()
            self.clock.advance(0.05)
        self.assertEqual(len(self.fired), 3)
        # Each within a step of its burst's start plus max_delay.
        self.assertLessEqual(self.fired[0], 1.0 + 0.05 + 1e-9)
        self.assertLessEqual(self.fired[1] - self.fired[0], 1.0 + 0.05 + 1e-9)

    def test_new_burst_after_firing(self):
        self.debouncer.poke()
        self.clock.advance(0.2)
        self.debouncer.poke()
        self.clock.advance(0.2)
        self.assertEqual(len(self.fired), 2)

    def test_cancel(self):
        self.debouncer.poke()
        self.debouncer.cancel()
        self.clock.advance(5)
        self.assertEqual(self.fired, [])

    def test_quiet_longer_than_cap_refused(self):
        self.assertRaises(ValueError, Debouncer, self.clock, 2, 1, lambda: None)


def pytest_approx(value):
    class Approx:
        def __eq__(self, other):
            return abs(other - value) < 1e-9

        def __repr__(self):
            return f"~{value}"

    return Approx()


class ClassifyTests(SynchronousTestCase):
    def test_file_events(self):
        wheel = p("sub", "a-1.0-py3-none-any.whl")
        for event in (
            FileCreatedEvent(wheel),
            FileModifiedEvent(wheel),
            FileClosedEvent(wheel),
            FileDeletedEvent(wheel),
            FakeEvent("attrib", wheel),
        ):
            self.assertEqual(classify(event, ROOT), [(wheel, False)], event)

    def test_own_reads_ignored(self):
        """opened and closed_no_write are what reading a file causes: never a refresh."""
        wheel = p("a-1.0-py3-none-any.whl")
        for kind in ("opened", "closed_no_write", "something_new"):
            self.assertEqual(classify(FakeEvent(kind, wheel), ROOT), [])

    def test_moves(self):
        temp = p(".pypid-incoming", ".upload-x.part")
        final = p("a-1.0.tar.gz")
        self.assertEqual(classify(FileMovedEvent(temp, final), ROOT), [(final, False)])
        self.assertEqual(classify(FileMovedEvent(final, p("a.txt")), ROOT), [(final, False)])
        self.assertEqual(
            classify(DirMovedEvent(p("old"), p("new")), ROOT), [(p("old"), True), (p("new"), True)]
        )

    def test_directory_events(self):
        """Directory creations and deletions count; their modifications do not."""
        self.assertEqual(classify(DirDeletedEvent(p("gone")), ROOT), [(p("gone"), True)])
        self.assertEqual(classify(DirCreatedEvent(p("new")), ROOT), [(p("new"), True)])
        self.assertEqual(classify(DirModifiedEvent(p("sub")), ROOT), [])
        self.assertEqual(classify(DirModifiedEvent(ROOT), ROOT), [])

    def test_names_filtered(self):
        for path in (
            p(".pypid", "cache.sqlite3-wal"),
            p(".git", "objects", "ab", "cdef"),
            p("sub", ".hidden", "a-1.0-py3-none-any.whl"),
            p("a-1.0-py3-none-any.whl.part"),
            p("README.txt"),
            "/elsewhere/a-1.0-py3-none-any.whl",
            ROOT,
        ):
            self.assertEqual(classify(FileCreatedEvent(path), ROOT), [], path)
        self.assertEqual(classify(DirCreatedEvent(p("build.tmp")), ROOT), [])
        self.assertEqual(classify(FileCreatedEvent(p("a-1.0-py3-none-any.whl.asc")), ROOT),
                         [(p("a-1.0-py3-none-any.whl.asc"), False)])
        self.assertEqual(classify(FileCreatedEvent(os.fsencode(p("x-1.0.zip"))), ROOT),
                         [(p("x-1.0.zip"), False)])

    def test_collapse(self):
        pending = {
            p("d"): True,
            p("d", "x.whl"): False,
            p("d", "e", "y.whl"): False,
            p("d-2", "z.whl"): False,
            p("top.whl"): False,
        }
        self.assertEqual(collapse(pending), [p("d"), p("d-2", "z.whl"), p("top.whl")])


class RefreshRecorder:
    """
    What the watcher and the rescans service ask of the directory store
    (its C{refresh} and C{rescan}), recorded and answered at once.
    """

    def __init__(self):
        self.refreshed = []
        self.rescans = 0

    def refresh(self, abspaths):
        self.refreshed.extend(abspaths)
        return succeed(None)

    def rescan(self):
        self.rescans += 1
        return succeed(None)


class RefreshRecorderTests(SynchronousTestCase):
    def test_speaks_like_the_directory_store(self):
        """The recorder's methods take what the directory store's take."""
        import inspect

        from pypid.store.directory.store import DirectoryStore

        for name in ("refresh", "rescan"):
            self.assertEqual(list(inspect.signature(getattr(RefreshRecorder, name)).parameters),
                             list(inspect.signature(getattr(DirectoryStore, name)).parameters), name)


class FakeReactor(Clock):
    def __init__(self):
        super().__init__()
        self.from_threads = 0

    def callFromThread(self, f, *args, **kwargs):
        self.from_threads += 1
        self.callLater(0, f, *args, **kwargs)


class FakeObserver:
    def __init__(self, refuse=None):
        self.scheduled = []
        self.refuse = refuse or {}
        self.state = "new"

    def start(self):
        self.state = "started"

    def schedule(self, handler, path, recursive=False):
        if path in self.refuse:
            raise OSError(self.refuse[path], os.strerror(self.refuse[path]))
        self.scheduled.append((handler, path, recursive))

    def stop(self):
        self.state = "stopped"

    def join(self, timeout=None):
        self.state = "joined"


class WatchServiceTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = FakeReactor()
        self.store = RefreshRecorder()
        self.observer = FakeObserver()
        self.watcher = WatchService(self.store, [ROOT], self.reactor, immediate,
                                    observer_factory=lambda: self.observer)
        self.logged = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def start(self):
        self.watcher.startService()
        self.reactor.advance(0)

    def stop(self):
        d = self.watcher.stopService()
        self.reactor.advance(0)
        return d

    def messages(self):
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.logged]

    def test_lifecycle(self):
        """Nothing runs before startService; stopService stops and joins the observer."""
        self.assertEqual(self.observer.state, "new")
        watching = self.watcher.when_watching()
        self.start()
        self.successResultOf(watching)
        self.assertEqual(self.observer.state, "started")
        [(handler, path, recursive)] = self.observer.scheduled
        self.assertEqual((path, recursive), (ROOT, True))
        self.successResultOf(self.stop())
        self.assertEqual(self.observer.state, "joined")

    def test_burst_is_refreshed_in_batches_back_to_back(self):
        """Thousands of events from watchdog's thread: a few hand-overs, then batches one after another."""
        self.start()
        handler = self.observer.scheduled[0][0]
        before = self.reactor.from_threads
        for i in range(5000):
            handler.dispatch(FileCreatedEvent(p("burst", f"p{i}-1.0-py3-none-any.whl")))
            handler.dispatch(FakeEvent("opened", p("x-1.0-py3-none-any.whl")))
            if i % 1000 == 0:
                self.reactor.advance(0.01)  # the reactor gets a turn now and then
        self.assertLessEqual(self.reactor.from_threads - before, 6)
        self.reactor.advance(0)
        self.assertEqual(self.store.refreshed, [])
        self.reactor.advance(0.2)
        # The store answers at once: every batch follows the last at once.
        self.assertEqual(sorted(self.store.refreshed),
                         sorted(p("burst", f"p{i}-1.0-py3-none-any.whl") for i in range(5000)))
        self.assertEqual((self.watcher.batches, self.watcher.events), (-(-5000 // BATCH), 5000))
        self.assertIn(f"refreshing {BATCH} paths after 5000 events", "\n".join(self.messages()))

    def test_a_drop_elsewhere_goes_in_the_next_batch(self):
        """While a big copy is refreshed batch by batch, a file dropped in another directory waits for one batch."""
        from twisted.internet.defer import Deferred

        class SlowStore(RefreshRecorder):
            def __init__(self):
                super().__init__()
                self.waiting = []

            def refresh(self, abspaths):
                self.refreshed.append(list(abspaths))
                d = Deferred()
                self.waiting.append(d)
                return d

        store = SlowStore()
        watcher = WatchService(store, [ROOT], self.reactor, immediate, observer_factory=lambda: self.observer,
                               batch=10)
        watcher.startService()
        self.reactor.advance(0)
        handler = self.observer.scheduled[-1][0]
        for i in range(100):
            handler.dispatch(FileCreatedEvent(p("copy", f"c{i}-1.0.tar.gz")))
        self.reactor.advance(0)
        self.reactor.advance(0.2)
        self.assertEqual([len(b) for b in store.refreshed], [10])
        handler.dispatch(FileCreatedEvent(p("drop", "d-1.0.tar.gz")))
        self.reactor.advance(5)
        self.assertEqual(len(store.refreshed), 1, "one refresh at a time")
        store.waiting.pop(0).callback(None)
        self.assertEqual(len(store.refreshed), 2, "the next batch at once, no debounce")
        self.assertIn(p("drop", "d-1.0.tar.gz"), store.refreshed[1])
        self.assertEqual(len(store.refreshed[1]), 10)
        store.waiting.pop(0).errback(RuntimeError("disk on fire"))
        self.assertEqual(len(store.refreshed), 3, "a failed refresh does not stop the next")
        self.flushLoggedErrors(RuntimeError)
        while store.waiting:
            store.waiting.pop(0).callback(None)
        self.assertEqual(sum(len(b) for b in store.refreshed), 101)
        watcher.stopService()
        self.reactor.advance(0)

    def test_metrics(self):
        self.start()
        metrics = self.watcher.metrics
        events = metrics.watcher_events.value(kind="created")
        refreshes = metrics.watcher_refreshes.value()
        handler = self.observer.scheduled[0][0]
        for i in range(3):
            handler.dispatch(FileCreatedEvent(p(f"m{i}-1.0.tar.gz")))
        handler.dispatch(FakeEvent("opened", p("m0-1.0.tar.gz")))
        self.reactor.advance(0)
        self.reactor.advance(1)
        self.assertEqual(metrics.watcher_events.value(kind="created") - events, 3)
        self.assertEqual(metrics.watcher_events.value(kind="opened"), 0)
        self.assertEqual(metrics.watcher_refreshes.value() - refreshes, 1)

    def test_directory_swallows_its_files(self):
        self.start()
        handler = self.observer.scheduled[0][0]
        handler.dispatch(DirCreatedEvent(p("new")))
        for i in range(10):
            handler.dispatch(FileCreatedEvent(p("new", f"p{i}-1.0.tar.gz")))
        handler.dispatch(FileDeletedEvent(p("old-1.0.tar.gz")))
        self.reactor.advance(0)
        self.reactor.advance(0.3)
        self.assertEqual(self.store.refreshed, [p("new"), p("old-1.0.tar.gz")])

    def test_nothing_to_do_for_ignored_events(self):
        self.start()
        handler = self.observer.scheduled[0][0]
        before = self.reactor.from_threads
        handler.dispatch(FakeEvent("closed_no_write", p("a-1.0-py3-none-any.whl")))
        handler.dispatch(DirModifiedEvent(ROOT))
        self.reactor.advance(5)
        self.assertEqual((self.reactor.from_threads - before, self.store.refreshed), (0, []))

    def test_watch_limit_falls_back_to_polling(self):
        self.observer.refuse = {ROOT: errno.ENOSPC}
        self.start()
        text = "\n".join(self.messages())
        self.assertIn("inotify watch limit reached", text)
        self.assertIn("sysctl fs.inotify.max_user_watches=", text)
        self.assertEqual(self.store.rescans, 0)
        self.reactor.advance(30)
        self.assertEqual(self.store.rescans, 1)
        self.successResultOf(self.stop())
        self.reactor.advance(60)
        self.assertEqual(self.store.rescans, 1)

    def test_observer_that_cannot_start_falls_back_to_polling(self):
        def broken():
            raise OSError(errno.EMFILE, "inotify instance limit reached")

        self.watcher.observer_factory = broken
        watching = self.watcher.when_watching()
        self.start()
        self.successResultOf(watching)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.reactor.advance(30)
        self.assertEqual(self.store.rescans, 1)
        self.successResultOf(self.stop())

    def test_instance_limit_names_its_sysctl(self):
        self.observer.refuse = {ROOT: errno.EMFILE}
        self.start()
        self.assertIn("fs.inotify.max_user_instances", "\n".join(self.messages()))

    def test_first_scan_waits_for_the_watches(self):
        """The index service's first scan runs once the watches are in place."""
        index = IndexService(self.store, self.reactor, 300, first_scan_after=self.watcher.when_watching)
        index.startService()
        self.assertEqual(self.store.rescans, 0)
        self.start()
        self.assertEqual(self.store.rescans, 1)
        index.stopService()

    def test_stop_before_started(self):
        """Stopped while the observer is still starting: it is stopped once started."""
        from twisted.internet.defer import Deferred

        started = Deferred()

        def slow(work, *args):
            # Work waits for `started`, then runs.
            done = Deferred()
            started.addCallback(lambda result: done.callback(work(*args)) or result)
            return done

        self.watcher.threads = slow
        self.watcher.startService()
        stopped = self.watcher.stopService()
        self.assertNoResult(stopped)
        started.callback(None)
        self.reactor.advance(0)
        self.reactor.advance(0)
        self.assertEqual(self.observer.state, "joined")
        self.successResultOf(stopped)

    def test_overflow_rescans(self):
        import logging

        self.start()
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        self.reactor.advance(0)
        self.assertEqual(self.store.rescans, 1)
        self.successResultOf(self.stop())


class ScheduleOptionsTests(SynchronousTestCase):
    def test_old_observer(self):
        """An observer without event_filter (watchdog < 4.0, and the fake) gets nothing more."""
        self.assertEqual(schedule_options(FakeObserver()), {})

    def test_reads_left_out(self):
        class FilteringObserver(FakeObserver):
            def schedule(self, handler, path, recursive=False, event_filter=None):
                self.scheduled.append((handler, path, recursive, event_filter))

        kinds = schedule_options(FilteringObserver())["event_filter"]
        names = {kind.__name__ for kind in kinds}
        self.assertTrue({"FileCreatedEvent", "FileModifiedEvent", "FileDeletedEvent", "FileMovedEvent",
                         "FileClosedEvent", "DirCreatedEvent", "DirDeletedEvent", "DirMovedEvent"} <= names)
        self.assertFalse({"FileOpenedEvent", "FileClosedNoWriteEvent"} & names)

    def test_real_observer_sees_no_reads(self):
        """Downloads read package files: with the options, the observer hears nothing of it."""
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        path = os.path.join(root, "a-1.0.tar.gz")
        with open(path, "wb") as f:
            f.write(b"x" * 100)
        seen = []
        lock = threading.Lock()

        class Recorder(FileSystemEventHandler):
            def dispatch(self, event):
                with lock:
                    seen.append((event.event_type, os.path.basename(os.fsdecode(event.src_path))))

        observer = Observer()
        observer.start()
        try:
            observer.schedule(Recorder(), root, recursive=True, **schedule_options(observer))
            for _ in range(20):
                with open(path, "rb") as f:
                    f.read()
            open(os.path.join(root, "b-1.0.tar.gz"), "wb").close()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                with lock:
                    if ("created", "b-1.0.tar.gz") in seen:
                        break
                time.sleep(0.02)
        finally:
            observer.stop()
            observer.join(5)
        with lock:
            self.assertIn(("created", "b-1.0.tar.gz"), seen)
            self.assertEqual([kind for kind, name in seen if name == "a-1.0.tar.gz"], [])


class WiringTests(SynchronousTestCase):
    """The options of the live directory, and what makeService builds from them."""

    def parse(self, *args):
        from pypid import tap

        options = tap.Options()
        options.parseOptions(list(args))
        return options

    def build(self, *args):
        from twisted.internet.testing import MemoryReactorClock

        from pypid import tap

        return tap.makeService(self.parse(*args), reactor=MemoryReactorClock())

    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)

    def test_defaults(self):
        top = self.build(self.directory)
        watcher = top.getServiceNamed("watch")
        self.assertIsInstance(watcher, WatchService)
        self.assertEqual(watcher.roots, [self.directory])
        self.assertEqual(watcher.fallback_poll, 30)
        self.assertIsNone(watcher._observer, "no thread before startService")
        index = top.getServiceNamed("index")
        self.assertIsInstance(index, IndexService)
        self.assertEqual(index.store.cache.directories[0], os.path.join(self.directory, ".pypid"))
        self.assertFalse(os.path.exists(os.path.join(self.directory, ".pypid")),
                         "nothing is created before startService")

    def test_state_dir_and_no_watch(self):
        state = os.path.join(self.directory, "..", "state")
        top = self.build("--state-dir", state, "--no-watch", "--rescan-interval", "10", self.directory)
        self.assertRaises(KeyError, top.getServiceNamed, "watch")
        index = top.getServiceNamed("index")
        self.assertEqual(index.store.cache.directories, [os.path.abspath(state)])
        self.assertIsNone(index.first_scan_after)

    def test_fallback_poll_follows_a_shorter_rescan_interval(self):
        top = self.build("--rescan-interval", "10", self.directory)
        watcher = top.getServiceNamed("watch")
        self.assertEqual(watcher.fallback_poll, 10)

    def test_ftp_needs_passwords(self):
        from twisted.python.usage import UsageError

        self.assertRaises(UsageError, self.parse, "--ftp", "2121", self.directory)
        self.assertRaises(UsageError, self.parse, "-P", ".", "-a", ".", "--ftp", "2121", self.directory)


class TakeBatchTests(SynchronousTestCase):
    def test_small_pending_goes_whole(self):
        pending = {p("a.tar.gz"): False, p("d"): True}
        self.assertEqual(take_batch(pending, 2), (pending, {}))

    def test_small_groups_whole_big_ones_share_the_rest(self):
        pending = {p("big", f"b{i}.tar.gz"): False for i in range(50)}
        pending.update({p("huge", f"h{i}.tar.gz"): False for i in range(80)})
        pending[p("one", "x.tar.gz")] = False
        pending[p("newdir")] = True
        batch, rest = take_batch(pending, 20)
        self.assertEqual(len(batch), 20)
        self.assertIn(p("one", "x.tar.gz"), batch)
        self.assertIs(batch[p("newdir")], True)
        counts = {d: sum(1 for q in batch if q.startswith(p(d, ""))) for d in ("big", "huge")}
        self.assertEqual(counts, {"big": 9, "huge": 9})
        self.assertEqual(set(batch) | set(rest), set(pending))
        self.assertFalse(set(batch) & set(rest))

    def test_more_groups_than_room(self):
        pending = {p(f"d{i}", "x.tar.gz"): False for i in range(30)}
        batch, rest = take_batch(pending, 8)
        self.assertEqual((len(batch), len(rest)), (8, 22))


class ExpandTests(SynchronousTestCase):
    """New directories are listed so their files go in batches; some must go whole."""

    def setUp(self):
        import tempfile

        self.root = os.path.realpath(tempfile.mkdtemp())
        self.addCleanup(__import__("shutil").rmtree, self.root)

    def touch(self, *parts):
        path = os.path.join(self.root, *parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").close()
        return path

    def test_files_below_a_new_directory(self):
        a = self.touch("new", "a-1.0.tar.gz")
        b = self.touch("new", "deep", "b-1.0-py3-none-any.whl")
        self.touch("new", "README.txt")
        self.touch("new", ".git", "c-1.0.tar.gz")
        files, whole = expand([os.path.join(self.root, "new")], [self.root])
        self.assertEqual((files, whole), ({a: False, b: False}, set()))

    def test_gone_linked_and_outside_go_whole(self):
        self.touch("real", "a-1.0.tar.gz")
        os.makedirs(os.path.join(self.root, "holder"))
        os.symlink(os.path.join(self.root, "real"), os.path.join(self.root, "holder", "link"))
        os.symlink(os.path.join(self.root, "real"), os.path.join(self.root, "alias"))
        asked = [os.path.join(self.root, name) for name in ("gone", "holder", "alias")] + ["/elsewhere/x"]
        files, whole = expand(asked, [self.root])
        self.assertEqual((files, whole), ({}, set(asked)))

    def test_watcher_sends_a_copied_directory_in_batches(self):
        reactor, store, observer = FakeReactor(), RefreshRecorder(), FakeObserver()
        batches = []
        store.refresh = lambda paths: batches.append(list(paths)) or succeed(None)
        watcher = WatchService(store, [self.root], reactor, immediate, observer_factory=lambda: observer, batch=4)
        watcher.startService()
        reactor.advance(0)
        handler = observer.scheduled[0][0]
        copied = [self.touch("copy", f"p{i}-1.0.tar.gz") for i in range(10)]
        handler.dispatch(DirCreatedEvent(os.path.join(self.root, "copy")))
        handler.dispatch(DirDeletedEvent(os.path.join(self.root, "old")))
        reactor.advance(0)
        reactor.advance(0.3)
        self.assertEqual(sorted(p for b in batches for p in b), sorted(copied + [os.path.join(self.root, "old")]))
        self.assertTrue(all(len(b) <= 4 for b in batches), batches)
        self.assertNotIn(os.path.join(self.root, "copy"), [p for b in batches for p in b])
        watcher.stopService()
        reactor.advance(0)


    def test_a_directory_to_refresh_whole_is_not_lost_beside_a_new_one(self):
        """A gone directory waiting to go whole survives the listing of another, newer one."""
        reactor, store, observer = FakeReactor(), RefreshRecorder(), FakeObserver()
        batches = []
        store.refresh = lambda paths: batches.append(list(paths)) or succeed(None)
        watcher = WatchService(store, [self.root], reactor, immediate, observer_factory=lambda: observer)
        watcher.startService()
        reactor.advance(0)
        gone = os.path.join(self.root, "gone")
        watcher._whole.add(gone)
        new = self.touch("fresh", "n-1.0.tar.gz")
        watcher.note([(gone, True), (os.path.join(self.root, "fresh"), True)], "created")
        reactor.advance(0)
        reactor.advance(0.3)
        self.assertEqual(sorted(p for b in batches for p in b), sorted([gone, new]))
        watcher.stopService()
        reactor.advance(0)
