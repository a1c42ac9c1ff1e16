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
