"""The upload checks and the landing of files (no server)."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile

from packaging.version import Version
from twisted.trial.unittest import SynchronousTestCase

from pypid.feed import incoming
from pypid.threads import immediate
from pypid.store.directory import landing
from pypid.feed.multipart import FilePart, Form
from pypid.testing import sdist_bytes, wheel_bytes
from pypid.store.interfaces import AlreadyStored, BadName
from pypid.feed.checks import (
    UploadError,
    check_archive,
    check_digests,
    check_file_upload,
    check_filename,
    check_removal,
)
from tests.uploadhelp import form_fields, multipart


def zip_sdist(name: str, version: str) -> tuple[str, bytes]:
    """The sdist of L{sdist_bytes} as a C{.zip} (as old setuptools wrote them)."""
    filename, data = sdist_bytes(name, version)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for member in tar.getmembers():
            z.writestr(member.name, tar.extractfile(member).read())
    return filename[: -len(".tar.gz")] + ".zip", buffer.getvalue()


def form(filename="demo-1.0-py3-none-any.whl", **fields):
    values = {":action": "file_upload", "name": "demo", "version": "1.0", "filetype": "bdist_wheel"}
    values.update(fields)
    return Form({k: [v] for k, v in values.items() if v is not None},
                {"content": [FilePart("content", filename, None, None, 10)]})


class FormTests(SynchronousTestCase):
    def refused(self, f, text):
        e = self.assertRaises(UploadError, check_file_upload, f)
        self.assertEqual(e.code, 400)
        self.assertIn(text, e.message)

    def test_good(self):
        upload = check_file_upload(form(sha256_digest="A" * 64, pyversion="py3", summary="UNKNOWN"))
        self.assertEqual((upload.project, upload.version), ("demo", Version("1.0")))
        self.assertEqual(upload.digests, {"sha256": "a" * 64})

    def test_empty_strings_are_absent(self):
        check_file_upload(form(filetype="", metadata_version="", md5_digest="", pyversion=""))

    def test_name_and_version_from_the_filename(self):
        """A form of only :action and content (curl -F) takes them from the file name (pypiserver does)."""
        for missing in ({"name": None}, {"version": None}, {"name": None, "version": None}):
            upload = check_file_upload(form(**missing))
            self.assertEqual((upload.name, upload.project, str(upload.version)), ("demo", "demo", "1.0"))
        f = form(name=None, version=None)
        del f.files["content"]
        self.refused(f, "Missing 'name'")
        # What the form says is still checked against the file name.
        self.refused(form(version=None, name="other"), "not of the project 'other'")

    def test_refusals(self):
        self.refused(form(name="-bad-"), "invalid value for Name")
        self.refused(form(version="one"), "invalid value for Version")
        self.refused(form(protocol_version="2"), "Unknown protocol version")
        self.refused(form(metadata_version="9.9"), "Metadata-Version")
        self.refused(form(filetype="bdist_egg"), "Unsupported file type")
        self.refused(form(filetype="sdist"), "does not match the file name")
        self.refused(form(sha256_digest="xyz"), "sha256_digest")
        self.refused(form("demo-1.0.tar.gz", filetype=None, pyversion="py3"), "pyversion")
        f = form()
        f.files["other"] = [FilePart("other", "x", None, None, 1)]
        self.refused(f, "other: Should not be a tuple")
        f = form()
        f.files["gpg_signature"] = [FilePart("gpg_signature", "x.asc", None, None, 1)]
        self.refused(f, "Unrelated signature")
        f = form()
        del f.files["content"]
        self.refused(f, "does not have a file")

    def test_filenames(self):
        v = Version("1.0")
        for bad in ("../demo-1.0.tar.gz", "a/demo-1.0.tar.gz", "demo-1.0.tar.gz\r\n", ".demo-1.0.tar.gz",
                    "demo-1.0.exe", "demo-1.0.tar.bz2", "demo 1.0.tar.gz", "other-1.0.tar.gz",
                    "demo-2.0.tar.gz", "demo-1.0-py3-none.whl", "demo-1.0.tar.gz\x00"):
            self.assertRaises(UploadError, check_filename, bad, None, "demo", v)
        self.assertEqual(check_filename("Demo-1.0.zip", "sdist", "DEMO", v).kind, "sdist")
        self.assertEqual(check_filename("demo-1.0.0-py3-none-any.whl", None, "demo", v).kind, "wheel")

    def test_digests(self):
        check_digests({"sha256": "ab"}, {"sha256": "ab", "md5": "cd"})
        self.assertRaises(UploadError, check_digests, {"md5": "00"}, {"sha256": "ab", "md5": "cd"})

    def test_removal(self):
        self.assertEqual(check_removal(Form({"name": ["Foo"], "version": ["1.0"]}, {})), ("Foo", Version("1.0")))
        e = self.assertRaises(UploadError, check_removal, Form({"name": ["Foo"]}, {}))
        self.assertIn("Missing 'name'/'version'", e.message)


class ArchiveTests(SynchronousTestCase):
    def setUp(self):
        self.dir = self.mktemp()
        os.makedirs(self.dir)

    def check(self, built, name=None, version=None):
        filename, data = built
        upload = check_file_upload(form(filename, name=name or filename.split("-")[0],
                                        version=version or filename.split("-")[1].replace(".tar.gz", ""),
                                        filetype=None))
        check_archive(io.BytesIO(data), upload, len(data))

    def test_real_dists_pass(self):
        self.check(wheel_bytes("demo", "1.0"))
        self.check(sdist_bytes("demo", "1.0"))

    def test_complete_by_the_listing_rule(self):
        """A tarball without its end-of-archive blocks reads fine with tarfile, but would never be listed: refused."""
        import gzip

        name, data = sdist_bytes("demo", "1.0")
        raw = gzip.decompress(data)
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            last = tar.getmembers()[-1]
        cut = raw[: last.offset_data + -(-last.size // 512) * 512]
        e = self.assertRaises(UploadError, self.check, (name, gzip.compress(cut)))
        self.assertIn("the tar archive does not end", e.message)

    def test_zip_sdist_from_a_spool_file(self):
        """The kind of archive comes from the upload's filename, not the spool file's (issue 18, item 13)."""
        filename, data = zip_sdist("demo", "1.0")
        self.check((filename, data), "demo", "1.0")
        # And a tarball named .zip is refused as the zip it claims to be.
        e = self.assertRaises(UploadError, self.check, (filename, sdist_bytes("demo", "1.0")[1]), "demo", "1.0")
        self.assertIn("Invalid distribution file", e.message)

    def test_metadata_must_agree(self):
        name, data = wheel_bytes("demo", "1.1")
        e = self.assertRaises(UploadError, self.check, ("demo-1.0-py3-none-any.whl", data), "demo", "1.0")
        self.assertIn("does not match", e.message)

    def test_truncated_and_garbage(self):
        name, data = sdist_bytes("demo", "1.0")
        self.assertRaises(UploadError, self.check, (name, data[: len(data) // 2]))
        self.assertRaises(UploadError, self.check, (name, b"not a tarball at all"))
        name, data = wheel_bytes("demo", "1.0")
        self.assertRaises(UploadError, self.check, (name, data[:-10]))


class ReceiveTests(SynchronousTestCase):
    """The multipart body's file part goes straight into the store's staging area."""

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.spool = landing.Spool(self.dir)

    def received(self, data, name="demo-1.0-py3-none-any.whl"):
        body, ctype = multipart(form_fields(name, data))
        return self.successResultOf(
            incoming.receive(io.BytesIO(body), ctype.encode(), landing.Staged(self.spool), immediate))

    def test_receive_hashes_and_stages(self):
        data = os.urandom(300_000)
        got = self.received(data)
        self.assertEqual(got.digests["sha256"], hashlib.sha256(data).hexdigest())
        self.assertEqual(got.digests["md5"], hashlib.md5(data).hexdigest())
        with got.content.reader() as f:
            self.assertEqual(f.read(), data)
        self.assertEqual(os.path.dirname(got.content.path), self.spool.path)
        got.content.abort()
        self.assertFalse(os.path.exists(self.spool.path), "the spool goes with the last upload")

    def test_malformed_body_leaves_nothing(self):
        body, ctype = multipart(form_fields("demo-1.0-py3-none-any.whl", b"x" * 1000))
        self.failureResultOf(incoming.receive(io.BytesIO(body[:-20]), ctype.encode(), landing.Staged(self.spool),
                                              immediate), UploadError)
        self.assertFalse(os.path.exists(self.spool.path))


class PlaceTests(SynchronousTestCase):
    """The directory store's landing: atomic, never clobbering, nothing left in the spool."""

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.spool = landing.Spool(self.dir)

    def staged(self, data):
        staged = landing.Staged(self.spool)
        staged.write(data)
        return staged, staged.finish()["sha256"]

    def test_place_create_identical_exists_overwrite(self):
        target = os.path.join(self.dir, "demo-1.0-py3-none-any.whl")
        first, sha = self.staged(b"one")
        self.assertEqual(landing.place(first.path, sha, target, False), "created")
        again, sha = self.staged(b"one")
        self.assertEqual(landing.place(again.path, sha, target, False), "identical")
        refused, sha = self.staged(b"two")
        e = self.assertRaises(AlreadyStored, landing.place, refused.path, sha, target, False)
        self.assertEqual(e.filename, "demo-1.0-py3-none-any.whl")
        with open(target, "rb") as f:
            self.assertEqual(f.read(), b"one")
        other, sha = self.staged(b"two")
        self.assertEqual(landing.place(other.path, sha, target, True), "replaced")
        with open(target, "rb") as f:
            self.assertEqual(f.read(), b"two")
        # The temporary files are gone: each staged file still counts until it is let go.
        self.assertEqual(os.listdir(self.spool.path), [])
        for staged in (first, again, refused, other):
            staged.abort()
        self.assertFalse(os.path.exists(self.spool.path))

    def test_land_refuses_a_folder_outside(self):
        """A target whose folder is not (or no longer) inside the root is refused, and nothing lands."""
        outside = os.path.abspath(self.mktemp())
        os.makedirs(outside)
        os.symlink(outside, os.path.join(self.dir, "out"))
        staged, _ = self.staged(b"x")
        for folder in ("out", "missing"):
            self.assertRaises(BadName, landing.land, staged, self.dir,
                              os.path.join(self.dir, folder, "demo-1.0.tar.gz"), False)
        self.assertEqual(os.listdir(outside), [])
        staged.abort()
        self.assertFalse(os.path.exists(self.spool.path))

    def test_clean_spool(self):
        """At start, every leftover of a crashed upload goes (pypid is the spool's only writer), then the spool."""
        os.makedirs(self.spool.path)
        for name, size in (("old", 1000), ("new", 5000)):
            with open(os.path.join(self.spool.path, landing.PREFIX + name + landing.SUFFIX), "wb") as f:
                f.write(b"x" * size)
        os.utime(os.path.join(self.spool.path, landing.PREFIX + "old.part"), (1, 1))
        removed, freed = landing.clean_spool(self.dir)
        self.assertEqual(removed, 2)
        self.assertGreaterEqual(freed, 6000)
        self.assertFalse(os.path.exists(self.spool.path))
        self.assertEqual(landing.clean_spool(self.dir), (0, 0))
        self.assertEqual(landing.cleaned_line(1, 3 * 1048576, "/p/.pypid-incoming"),
                         "removed 1 leftover upload file of uploads cut short by a crash from "
                         "/p/.pypid-incoming (3.0 MiB freed)")

    def test_spool_is_kept_while_used_and_something_else_in_it(self):
        one, two = landing.Staged(self.spool), landing.Staged(self.spool)
        one.abort()
        self.assertTrue(os.path.isdir(self.spool.path))
        two.abort()
        two.abort()
        self.assertFalse(os.path.exists(self.spool.path))
        staged = landing.Staged(self.spool)
        open(os.path.join(self.spool.path, "someone-elses"), "w").close()
        staged.abort()
        self.assertEqual(os.listdir(self.spool.path), ["someone-elses"])
