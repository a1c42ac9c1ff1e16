"""
The catalog's pure parts: the release identity its unique index compares,
and how a catalog URL is named in messages (never with its password).
Everything that talks to PostgreSQL is in tests/process/test_catalog.py.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pypid.store.objectstore.catalog import CatalogConfigError, check_url, describe_url, release_key

try:
    import psycopg2  # noqa: F401
except ImportError:  # pragma: no cover - scripts/test installs the extra
    psycopg2 = None


class ReleaseKeyTests(SynchronousTestCase):
    def assertSame(self, *spellings):
        keys = {release_key(*s) for s in spellings}
        self.assertEqual(len(keys), 1, keys)

    def assertDifferent(self, *spellings):
        keys = [release_key(*s) for s in spellings]
        self.assertEqual(len(set(keys)), len(keys), keys)

    def test_case_variants_of_a_wheel_are_one_file(self):
        self.assertSame(
            ("Demo", "1.0", "Demo-1.0-py3-none-any.whl"),
            ("demo", "1.0", "demo-1.0-py3-none-any.whl"),
            ("DEMO", "1.0", "DEMO-1.0-PY3-NONE-ANY.WHL"),
        )

    def test_name_and_version_are_normalised(self):
        self.assertSame(
            ("my_pkg", "1.0", "my_pkg-1.0-py3-none-any.whl"),
            ("My.Pkg", "1.0.0", "My.Pkg-1.0.0-py3-none-any.whl"),
            ("my-pkg", "1.0.0.0", "my_pkg-1.0.0.0-py3-none-any.whl"),
        )
        self.assertSame(("demo", "1.0rc1", "demo-1.0rc1.tar.gz"), ("demo", "1.0.0-RC1", "demo-1.0.0-RC1.tar.gz"))

    def test_a_tag_set_in_any_order_is_one_file(self):
        self.assertSame(
            ("demo", "1.0", "demo-1.0-py2.py3-none-any.whl"),
            ("demo", "1.0", "demo-1.0-py3.py2-none-any.whl"),
        )
        self.assertSame(
            ("demo", "1.0", "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
            ("demo", "1.0", "demo-1.0-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"),
        )

    def test_other_files_of_a_release_are_other_files(self):
        self.assertDifferent(
            ("demo", "1.0", "demo-1.0-py3-none-any.whl"),
            ("demo", "1.0", "demo-1.0-1-py3-none-any.whl"),       # a build tag
            ("demo", "1.0", "demo-1.0-2-py3-none-any.whl"),
            ("demo", "1.0", "demo-1.0-cp311-cp311-linux_x86_64.whl"),
            ("demo", "1.0", "demo-1.0.tar.gz"),
            ("demo", "1.0", "demo-1.0.zip"),
            ("demo", "1.0", "demo-1.0.tar.bz2"),
            ("demo", "1.0", "demo-1.0-py3.11.egg"),
            ("demo", "1.0", "demo-1.0-py3.11-linux-x86_64.egg"),
            ("demo", "1.1", "demo-1.1.tar.gz"),
            ("demo2", "1.0", "demo2-1.0.tar.gz"),
            ("demo", "1.0.post1", "demo-1.0.post1.tar.gz"),
        )

    def test_an_unparseable_version_is_compared_as_written(self):
        self.assertDifferent(("demo", "nightly", "demo-nightly.tar.gz"), ("demo", "Nightly2", "demo-Nightly2.tar.gz"))
        self.assertSame(("demo", "nightly", "demo-nightly.tar.gz"), ("demo", "NIGHTLY", "demo-NIGHTLY.TAR.GZ"))


class UrlTests(SynchronousTestCase):
    def setUp(self):
        if psycopg2 is None:
            self.skipTest("psycopg2 is not installed")

    def test_described_without_password(self):
        self.assertEqual(describe_url("postgresql://pypid:s3cret@db.example:5433/catalog?sslmode=require"),
                         "postgresql://pypid@db.example:5433/catalog")
        self.assertEqual(describe_url("postgresql:///catalog"), "postgresql:///catalog")

    def test_not_a_libpq_url(self):
        for url, line in [
            ("db.example/catalog", "--catalog must be a libpq URL, postgresql://USER@HOST:PORT/DATABASE"),
            ("postgresql://u:s3cret@h/db?bogus=1", "--catalog postgresql://? is not a valid libpq URL"),
        ]:
            with self.assertRaises(CatalogConfigError) as caught:
                check_url(url)
            self.assertEqual(str(caught.exception), line)
            self.assertNotIn("s3cret", str(caught.exception))
