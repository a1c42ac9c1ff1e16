from hypothesis import given, strategies as st
from packaging.utils import canonicalize_name
from twisted.trial.unittest import SynchronousTestCase

from pypid.index.names import is_normalized, is_valid, normalize


class NormalizeTests(SynchronousTestCase):
    def test_spec_vectors(self):
        """Every spelling in the names spec normalises to friendly-bard."""
        for name in ["Friendly-Bard", "FRIENDLY-BARD", "friendly.bard", "friendly_bard",
                     "friendly--bard", "FrIeNdLy-._.-bArD"]:
            self.assertEqual(normalize(name), "friendly-bard")

    def test_validity(self):
        """Names start and end with a letter or digit; a trailing newline is invalid."""
        for good in ["a", "A1", "foo.bar", "foo_bar-baz", "0"]:
            self.assertTrue(is_valid(good), good)
        for bad in ["", "-foo", "foo-", "foo bar", "foo\n", "fo/o", "é", ".hidden"]:
            self.assertFalse(is_valid(bad), bad)

    def test_is_normalized(self):
        self.assertTrue(is_normalized("foo-bar"))
        self.assertFalse(is_normalized("Foo_bar"))


_names = st.from_regex(r"\A[A-Za-z0-9]([A-Za-z0-9._-]{0,20}[A-Za-z0-9])?\Z")


@given(_names)
def test_matches_packaging_and_is_idempotent(name):
    """normalize() agrees with packaging and is idempotent."""
    assert normalize(name) == canonicalize_name(name)
    assert normalize(normalize(name)) == normalize(name)
