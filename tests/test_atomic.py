import os

from twisted.trial.unittest import SynchronousTestCase

from pypid.atomic import replacing


class ReplacingTests(SynchronousTestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.target = os.path.join(self.dir, "file")

    def test_replaces_whole(self):
        with open(self.target, "wb") as f:
            f.write(b"old")
        with replacing(self.target, mode=0o640) as f:
            f.write(b"new")
            with open(self.target, "rb") as current:
                self.assertEqual(current.read(), b"old", "readers see the old file until the end")
        with open(self.target, "rb") as f:
            self.assertEqual(f.read(), b"new")
        self.assertEqual(os.stat(self.target).st_mode & 0o777, 0o640)
        self.assertEqual(os.listdir(self.dir), ["file"])

    def test_error_leaves_target_and_no_temporary(self):
        with open(self.target, "wb") as f:
            f.write(b"old")
        with self.assertRaises(ValueError):
            with replacing(self.target) as f:
                f.write(b"half")
                raise ValueError("refused")
        with open(self.target, "rb") as f:
            self.assertEqual(f.read(), b"old")
        self.assertEqual(os.listdir(self.dir), ["file"])

    def test_text(self):
        with replacing(self.target, text=True) as f:
            f.write("é\n")
        with open(self.target, encoding="utf-8") as f:
            self.assertEqual(f.read(), "é\n")
