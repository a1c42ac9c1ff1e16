"""pypid.threads: work prepared once per version, in a thread."""

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from pypid.threads import Prepared


class FakeThreads:
    """Runs nothing until the test says so: each call is a pending job."""

    def __init__(self) -> None:
        self.jobs: list[tuple] = []

    def __call__(self, f, *args) -> Deferred:
        d: Deferred = Deferred()
        self.jobs.append((f, args, d))
        return d

    def run(self) -> None:
        f, args, d = self.jobs.pop(0)
        try:
            result = f(*args)
        except Exception as e:
            d.errback(e)
        else:
            d.callback(result)


class PreparedTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.state = 1
        self.threads = FakeThreads()
        self.prepared = Prepared(lambda: self.state, lambda s: f"built {s}", self.threads)

    def test_waits_for_the_build(self) -> None:
        """The first get waits for a build in a thread; later ones answer at once."""
        d = self.prepared.get()
        self.assertNoResult(d)
        self.assertEqual(len(self.threads.jobs), 1)
        self.threads.run()
        self.assertEqual(self.successResultOf(d), "built 1")
        self.assertEqual(self.prepared.get(), "built 1")
        self.assertEqual(self.threads.jobs, [])

    def test_one_build_for_many_waiters(self) -> None:
        first, second = self.prepared.get(), self.prepared.get()
        self.assertEqual(len(self.threads.jobs), 1)
        self.threads.run()
        self.assertEqual((self.successResultOf(first), self.successResultOf(second)), ("built 1", "built 1"))
        self.assertEqual(self.prepared.builds, 1)

    def test_change_during_a_build(self) -> None:
        """Who asked after a change waits for a build of the new state; who asked before does not."""
        early = self.prepared.get()
        self.state = 2
        self.prepared.invalidate()
        late = self.prepared.get()
        self.assertEqual(len(self.threads.jobs), 1, "one build at a time")
        self.threads.run()
        self.assertEqual(self.successResultOf(early), "built 1")
        self.assertNoResult(late)
        self.assertEqual(self.prepared.latest(), "built 1")
        self.assertIsNone(self.prepared.peek())
        self.threads.run()
        self.assertEqual(self.successResultOf(late), "built 2")
        self.assertEqual(self.prepared.peek(), "built 2")

    def test_changes_coalesce(self) -> None:
        """Changes nobody asked about cost nothing; many changes, one build."""
        for state in range(2, 10):
            self.state = state
            self.prepared.invalidate()
        self.assertEqual(self.threads.jobs, [])
        d = self.prepared.get()
        self.threads.run()
        self.assertEqual(self.successResultOf(d), "built 9")
        self.assertEqual(self.prepared.builds, 1)

    def test_failure(self) -> None:
        """A failed build fails its waiters; the next get tries again."""
        prepared = Prepared(lambda: self.state, lambda s: 1 / 0, self.threads)
        d = prepared.get()
        self.threads.run()
        self.failureResultOf(d, ZeroDivisionError)
        again = prepared.get()
        self.assertEqual(len(self.threads.jobs), 1)
        self.threads.run()
        self.failureResultOf(again, ZeroDivisionError)

    def test_without_threads(self) -> None:
        prepared = Prepared(lambda: self.state, lambda s: [s], None)
        value = prepared.get()
        self.assertEqual(value, [1])
        self.assertIs(prepared.get(), value)
        self.state = 2
        prepared.invalidate()
        self.assertEqual(prepared.get(), [2])
