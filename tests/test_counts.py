from twisted.trial.unittest import SynchronousTestCase

from pypid.counts import counted, human_size, plural


class CountsTests(SynchronousTestCase):
    def test_one_and_many(self):
        self.assertEqual(counted(1, "project"), "1 project")
        self.assertEqual(counted(0, "project"), "0 projects")
        self.assertEqual(counted(12, "file"), "12 files")

    def test_irregular_plural(self):
        self.assertEqual(counted(2, "entry", "entries"), "2 entries")
        self.assertEqual(plural(1, "entry", "entries"), "entry")

    def test_human_size_picks_the_unit_that_fits(self):
        sizes = (0, 1, 1023, 1024, 48 * 1024, 2**20, 5 * 2**20, 3 * 2**30, 5 * 2**40)
        self.assertEqual([human_size(n) for n in sizes], [
            "0 bytes", "1 byte", "1023 bytes", "1.0 KiB", "48.0 KiB", "1.0 MiB", "5.0 MiB",
            "3.0 GiB", "5120.0 GiB"])
