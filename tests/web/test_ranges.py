from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pypid.web.ranges import UNSATISFIABLE, parse_range


class ParseRangeTests(SynchronousTestCase):
    def test_single_ranges(self):
        size = 1120
        for header, expected in [
            (b"bytes=0-0", (0, 0)),
            (b"bytes=10-19", (10, 19)),
            (b"bytes=100-", (100, 1119)),
            (b"bytes=1119-", (1119, 1119)),
            (b"bytes=0-5000", (0, 1119)),
            (b"bytes=-100", (1020, 1119)),
            (b"bytes=-1120", (0, 1119)),
            (b"bytes=-99999", (0, 1119)),  # a suffix longer than the file: all of it
            (b"Bytes = 1-2 ", (1, 2)),
            (b"bytes=0-9,", (0, 9)),
            (b"bytes=0-9," + b"9" * 5000 + b"-", (0, 9)),  # no huge ints
        ]:
            self.assertEqual(parse_range(header, size), expected, header)

    def test_unsatisfiable(self):
        for header in [b"bytes=1120-", b"bytes=5000-6000", b"bytes=-0", b"bytes=2000-,3000-"]:
            self.assertIs(parse_range(header, 1120), UNSATISFIABLE, header)
        self.assertIs(parse_range(b"bytes=0-", 0), UNSATISFIABLE)
        self.assertIs(parse_range(b"bytes=-5", 0), UNSATISFIABLE)

    def test_whole_file(self):
        """No header, another unit, anything malformed, and several ranges: the whole file."""
        for header in [None, b"items=0-5", b"bytes", b"bytes=", b"bytes=,", b"bytes=abc", b"bytes=10-5",
                       b"bytes=-", b"bytes=1-2-3", b"bytes=+1-2", b"bytes=1_0-20", b"bytes=0-9,x",
                       b"bytes=0-9,20-29", b"bytes=0-9,5-14"]:
            self.assertIsNone(parse_range(header, 1120), header)

    def test_several_with_one_satisfiable(self):
        """Only one of several ranges overlaps the file: that one, as a single range."""
        self.assertEqual(parse_range(b"bytes=0-9,1130-", 1120), (0, 9))

    @given(st.integers(0, 10_000), st.integers(0, 12_000), st.one_of(st.none(), st.integers(0, 12_000)))
    def test_first_last(self, size, first, last):
        """C{first-last} and C{first-}: within the file, or unsatisfiable, or ignored when inverted."""
        header = b"bytes=%d-%s" % (first, b"" if last is None else b"%d" % last)
        result = parse_range(header, size)
        if last is not None and last < first:
            self.assertIsNone(result)
        elif first >= size:
            self.assertIs(result, UNSATISFIABLE)
        else:
            end = size - 1 if last is None else min(last, size - 1)
            self.assertEqual(result, (first, end))

    @given(st.integers(0, 10_000), st.integers(0, 12_000))
    def test_suffix(self, size, count):
        result = parse_range(b"bytes=-%d" % count, size)
        if count == 0 or size == 0:
            self.assertIs(result, UNSATISFIABLE)
        else:
            self.assertEqual(result, (max(size - count, 0), size - 1))
