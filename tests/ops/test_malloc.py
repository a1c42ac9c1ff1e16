"""pypid.ops.malloc: the allocator thresholds."""

import platform

from twisted.trial.unittest import SynchronousTestCase

from pypid.ops import malloc


class TuneTests(SynchronousTestCase):
    def test_glibc_takes_the_thresholds(self) -> None:
        if platform.libc_ver()[0] != "glibc":
            self.skipTest("glibc only")
        self.assertTrue(malloc.tune())

    def test_no_c_library_is_left_alone(self) -> None:
        self.assertFalse(malloc.tune("libno-such-library.so.9"))


class HeapTrimmerTests(SynchronousTestCase):
    """The trim after a burst: only when RSS grew well over the last trim, one at a time."""

    def setUp(self) -> None:
        from twisted.internet.task import Clock

        from pypid.threads import immediate

        self.clock = Clock()
        self.rss = [100]
        self.trims: list[int] = []

        def trim(pad: int) -> int:
            self.trims.append(pad)
            self.rss[0] = 105
            return 1

        self.trimmer = malloc.HeapTrimmer(self.clock, immediate, trim, lambda: self.rss[0], interval=30, slack=16)
        self.trimmer.startService()
        self.addCleanup(self.trimmer.stopService)

    def test_idle_is_left_alone(self) -> None:
        self.rss[0] = 110
        self.clock.advance(300)
        self.assertEqual(self.trims, [])

    def test_a_burst_is_trimmed_once_it_grew(self) -> None:
        self.rss[0] = 180
        self.clock.advance(29)
        self.assertEqual(self.trims, [])
        self.clock.advance(1)
        self.assertEqual(self.trims, [0])
        self.assertEqual(self.trimmer.freed, 75)
        # Measured from after the trim (105): 115 is no new burst.
        self.rss[0] = 115
        self.clock.advance(60)
        self.assertEqual(self.trims, [0])

    def test_one_trim_at_a_time(self) -> None:
        from twisted.internet.defer import Deferred

        held: list[Deferred] = []

        def threads(f, *args):
            d: Deferred = Deferred()
            held.append(d)
            return d

        self.trimmer.threads = threads
        self.rss[0] = 500
        self.clock.advance(90)
        self.assertEqual(len(held), 1, "no second trim while one runs")
        held[0].callback(1)
        self.rss[0] = 600
        self.clock.advance(30)
        self.assertEqual(len(held), 2)

    def test_glibc_trim(self) -> None:
        if platform.libc_ver()[0] != "glibc":
            self.skipTest("glibc only")
        trim = malloc.trim_function()
        self.assertIsNotNone(trim)
        self.assertIn(trim(0), (0, 1))
        self.assertGreater(malloc.resident_bytes(), 0)
        self.assertIsNone(malloc.trim_function("libno-such-library.so.9"))
