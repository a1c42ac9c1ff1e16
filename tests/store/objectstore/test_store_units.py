"""
The object store backend's pure parts: the listing built from catalog rows,
the description of a staged file, fsck's comparison, the keys of files and
shared upstream files, and the options (the extra is not imported without
C{--store}). What talks to SeaweedFS and PostgreSQL is in tests/process.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

from packaging.version import Version
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from pypid.store.objectstore.admin import fsck
from pypid.store.objectstore.catalog import FileRecord
from pypid.store.objectstore.s3 import ObjectInfo
from pypid.store.objectstore.store import Described, describe_file, distfiles_of, object_key
from pypid.store.objectstore.upstream import shared_key
from pypid.testing import metadata_text, sdist_bytes, wheel_bytes


def record(filename: str, data: bytes, **kwargs) -> FileRecord:
    sha256 = hashlib.sha256(data).hexdigest()
    fields = dict(project="demo-pkg", project_name="Demo_Pkg", version="1.0", filename=filename,
                  object_key=object_key(sha256, filename), size=len(data), sha256=sha256,
                  uploaded_at=1700000000.123456)
    fields.update(kwargs)
    return FileRecord(**fields)


class ListingTests(SynchronousTestCase):
    def test_rows_become_what_the_index_lists(self):
        wheel = record("Demo_Pkg-1.0-py3-none-any.whl", b"w", requires_python=">=3.8", summary="A demo",
                       core_metadata_sha256="c" * 64, has_signature=True, signature_size=120)
        sdist = record("demo_pkg-1.0.tar.gz", b"s", core_metadata_sha256="d" * 64,
                       object_key="elsewhere/demo_pkg-1.0.tar.gz")
        odd = record("not a dist name", b"x")
        listing = distfiles_of([wheel, sdist, odd])
        self.assertEqual([f.path for f in listing.files], [wheel.filename, sdist.filename])
        w, s = listing.files
        self.assertEqual(
            (w.root, w.project, w.name, w.version, w.kind, w.python_version, w.size, w.digest, w.requires_python,
             w.metadata_sha256, w.summary, w.has_sig, w.mtime_ns),
            (0, "demo-pkg", "Demo_Pkg", Version("1.0"), "wheel", "py3", 1, wheel.sha256, ">=3.8", "c" * 64,
             "A demo", True, 1700000000123456000))
        # Only wheels offer a .metadata file.
        self.assertIsNone(s.metadata_sha256)
        self.assertEqual(listing.signatures, {wheel.filename: 120})
        self.assertEqual(listing.keys, {sdist.filename: "elsewhere/demo_pkg-1.0.tar.gz"})

    def test_display_name_must_match_the_project(self):
        listing = distfiles_of([record("demo_pkg-1.0.tar.gz", b"s", project_name="Something_Else")])
        self.assertEqual(listing.files[0].name, "demo_pkg")

    def test_strings_are_shared(self):
        rows = [record(f"demo_pkg-1.{n}.tar.gz", bytes([n]), summary="".join(["A ", "demo"])) for n in range(3)]
        files = distfiles_of(rows).files
        self.assertIs(files[0].summary, files[2].summary)
        self.assertIs(files[0].project, files[1].project)


class DescribeTests(SynchronousTestCase):
    def write(self, built) -> str:
        path = os.path.join(self.mktemp())
        with open(path, "wb") as f:
            f.write(built[1])
        return path

    def test_a_wheel_and_an_sdist(self):
        filename, data = wheel_bytes("Demo_Pkg", "1.0", requires_python=">=3.8", summary="A demo")
        described = describe_file(self.write((filename, data)), filename)
        metadata = metadata_text("Demo_Pkg", "1.0", ">=3.8", (), "A demo").encode()
        self.assertEqual(described, Described("demo-pkg", "Demo_Pkg", "1.0", ">=3.8", "A demo", metadata,
                                               hashlib.sha256(metadata).hexdigest()))
        filename, data = sdist_bytes("Demo_Pkg", "1.0")
        described = describe_file(self.write((filename, data)), filename)
        self.assertEqual((described.project, described.summary), ("demo-pkg", "The Demo_Pkg test package"))

    def test_what_cannot_be_listed_says_why(self):
        filename, data = sdist_bytes("Demo_Pkg", "1.0")
        reason = describe_file(self.write((filename, data[: len(data) // 2])), filename)
        self.assertIsInstance(reason, str)
        self.assertEqual(describe_file(self.write(("x", b"")), "README"),
                         "not a distribution filename pypid can parse")


class FsckTests(SynchronousTestCase):
    def test_orphans_and_missing(self):
        kept = record("kept-1.0-py3-none-any.whl", b"kept", has_signature=True, signature_size=3)
        lost = record("lost-1.0-py3-none-any.whl", b"lost")
        short = record("short-1.0-py3-none-any.whl", b"short")
        now = 10_000.0

        def info(key, size=1, age=0.0):
            return ObjectInfo(key, size, "etag", now - age)

        objects = [info(kept.object_key, 4), info(kept.object_key + ".asc"), info(kept.object_key + ".metadata"),
                   info(short.object_key, 2), info("files/aa/old-orphan.whl", 9, age=7200),
                   info("files/bb/new-orphan.whl", 9, age=10)]
        result = fsck([kept, lost, short], objects, now, 3600)
        self.assertEqual([o.key for o in result.orphans], ["files/aa/old-orphan.whl", "files/bb/new-orphan.whl"])
        self.assertEqual({o.key for o in result.old_orphans}, {"files/aa/old-orphan.whl"})
        self.assertEqual([(r.filename, why) for r, why in result.missing], [
            (lost.filename, "no object"), (short.filename, "the object has 2 bytes, the row says 5")])
        self.assertEqual(result.lines()[1], "orphan: files/bb/new-orphan.whl (9 bytes, recent: an upload in flight?)")


class KeyTests(SynchronousTestCase):
    def test_keys(self):
        self.assertEqual(object_key("ab" * 32, "x-1.0.tar.gz"), f"files/ab/{'ab' * 32}/x-1.0.tar.gz")
        self.assertEqual(shared_key("https://files.example/a/b/x-1.0.tar.gz", (("md5", "0" * 32), ("sha256", "f" * 64))),
                         f"upstream/sha256/ff/{'f' * 64}/x-1.0.tar.gz")
        self.assertIsNone(shared_key("https://files.example/x-1.0.tar.gz", ()))


class OptionTests(SynchronousTestCase):
    def parse(self, *args):
        from pypid.tap import Options

        options = Options()
        options.parseOptions(list(args))
        return options.config

    def test_replica_options_are_checked(self):
        state = os.path.abspath(self.mktemp())
        config = self.parse("--store", "s3://bucket/some/prefix", "--s3-endpoint", "http://127.0.0.1:9000",
                            "--catalog", "postgresql://pypid@db.internal/pypid", "--s3-redirect",
                            "--state-dir", state)
        store = config.objectstore
        self.assertEqual((store.store, store.endpoint, store.redirect, store.work_dir),
                         ("s3://bucket/some/prefix", "http://127.0.0.1:9000", True, state))
        self.assertEqual(config.directory.roots, (state,))
        self.assertTrue(os.path.isdir(state))
        for args, message in [
            (("--catalog", "postgresql://x/y"), "--catalog goes with --store s3://BUCKET/PREFIX."),
            (("--s3-redirect",), "--s3-redirect goes with --store s3://BUCKET/PREFIX."),
            (("--store", "s3://bucket/p"), "--store needs --catalog postgresql://USER@HOST:PORT/DATABASE"),
            (("--store", "s3://bucket/p", "--catalog", "postgresql://x/y", "--hash-algo", "md5"),
             "--store lists sha256 digests: leave --hash-algo at sha256."),
            (("--store", "s3://B", "--catalog", "postgresql://x/y"), "'B' is not a valid bucket name"),
            (("--store", "s3://bucket", "--catalog", "postgresql://x/y", "--s3-endpoint", "ftp://x"),
             "--s3-endpoint must be an http:// or https:// URL"),
            (("--store", "s3://bucket", "--catalog", "mysql://x/y"), "--catalog must be a libpq URL"),
        ]:
            with self.assertRaises(usage.UsageError) as caught:
                self.parse("--state-dir", state, *args)
            self.assertIn(message, str(caught.exception))

    def test_the_extra_is_not_imported_without_store(self):
        """twistd pypid DIR builds its service without botocore or psycopg2."""
        code = (
            "import sys\n"
            "from pypid import tap\n"
            "options = tap.Options()\n"
            f"options.parseOptions([{os.path.abspath('.')!r}])\n"
            "tap.makeService(options)\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('botocore', 'psycopg2'))\n"
            "assert not loaded, loaded\n"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
        self.assertEqual(result.returncode, 0, result.stderr)
