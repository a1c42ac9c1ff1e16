from twisted.trial.unittest import SynchronousTestCase

from pypid.counts import counted, plural


class CountsTests(SynchronousTestCase):
    def test_one_and_many(self):
        self.assertEqual(counted(1, "project"), "1 project")
        self.assertEqual(counted(0, "project"), "0 projects")
        self.assertEqual(counted(12, "file"), "12 files")

    def test_irregular_plural(self):
        self.assertEqual(counted(2, "entry", "entries"), "2 entries")
        self.assertEqual(plural(1, "entry", "entries"), "entry")
