"""
The contract of L{pypid.store.interfaces.IPackageStore}: what every backend
does, run against each of them (tests/store/test_contract.py). A fake that
drifts from the real store fails here.

A backend's test case mixes L{PackageStoreContract} into a
C{SynchronousTestCase} (its threads are L{pypid.threads.immediate}) and
provides:

    - C{makeStore()}: a new, empty store whose first scan has not finished;
    - C{startStore(store)}: finish it (the first scan, or what stands for it);
    - C{makeFolder(store, name)}: a folder new files may be published into
      (a backend without folders sets C{folders = False} instead: it must
      refuse every name with a folder).

A backend whose results come later (over the network) overrides
C{successResultOf} and C{failureResultOf} to wait for them.
"""

from __future__ import annotations

import hashlib

from packaging.version import Version
from twisted.internet.defer import Deferred
from zope.interface.verify import verifyObject

from pypid.index.model import DistFile
from pypid.store.interfaces import AlreadyStored, BadName, IBody, IPackageStore, IStaged, NotListed, Placed
from pypid.store.metadata import MetadataError
from pypid.testing import metadata_text, sdist_bytes, wheel_bytes

WHEEL = wheel_bytes("Demo_Pkg", "1.0", requires_python=">=3.8", summary="A demo")
OTHER_WHEEL = wheel_bytes("Demo_Pkg", "1.0", summary="Changed")
SDIST = sdist_bytes("Demo_Pkg", "1.0")
SIGNATURE = b"-----BEGIN PGP SIGNATURE-----\nabc\n-----END PGP SIGNATURE-----\n"


class FakeRequest:
    """Just what a body's C{stream} uses of a request."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.producer = None
        self.finished = False
        self.lost = False
        self.finish_deferred: Deferred = Deferred()

    def registerProducer(self, producer, streaming) -> None:
        assert streaming and self.producer is None
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def notifyFinish(self) -> Deferred:
        return self.finish_deferred

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def finish(self) -> None:
        self.finished = True
        self.finish_deferred.callback(None)

    def loseConnection(self) -> None:
        self.lost = True


class PackageStoreContract:
    """The behaviour every L{IPackageStore} shares."""

    #: Whether the backend keeps files in folders (C{sub/x.whl}).
    folders = True

    def store(self):
        store = self.makeStore()
        self.startStore(store)
        return store

    def staged(self, store, data: bytes) -> IStaged:
        staged = store.stage()
        for i in range(0, len(data), 1000):
            staged.write(data[i:i + 1000])
        return staged

    def publish(self, store, built, name=None, overwrite=False, signature=None) -> Placed:
        filename, data = built
        staged = self.staged(store, data)
        staged.finish()
        try:
            return self.successResultOf(store.publish(name or filename, staged, overwrite, signature))
        finally:
            staged.abort()

    def read(self, body) -> bytes:
        """All of a body's bytes (read at once or later), the body then closed."""
        self.assertIsNotNone(body)
        try:
            data = body.read(0, body.size)
            if isinstance(data, Deferred):
                data = self.successResultOf(data)
            return data
        finally:
            body.close()

    # The interface

    def test_provides_the_interfaces(self):
        store = self.store()
        verifyObject(IPackageStore, store)
        staged = store.stage()
        verifyObject(IStaged, staged)
        staged.abort()
        self.publish(store, WHEEL)
        body = store.open(store.snapshot.files[WHEEL[0]])
        verifyObject(IBody, body)
        body.close()

    # Readiness and notifications

    def test_when_ready_fires_once(self):
        """whenReady waits for the first complete snapshot, fires once, then at once."""
        store = self.makeStore()
        fired = []
        d = store.whenReady()
        d.addCallback(fired.append)
        self.assertFalse(store.ready)
        self.assertEqual(fired, [])
        self.startStore(store)
        self.assertTrue(store.ready)
        self.assertEqual(fired, [None])
        self.assertIsNone(self.successResultOf(store.whenReady()))
        self.assertEqual(fired, [None])

    def test_subscribers_see_each_change(self):
        """Every change to the listing is told, with the projects it touched; a no-op is not."""
        store = self.store()
        seen = []
        store.subscribe(lambda snapshot, changed: seen.append((snapshot, changed)))
        self.publish(store, WHEEL)
        self.assertEqual([changed for _, changed in seen], [frozenset({"demo-pkg"})])
        self.assertIs(seen[-1][0], store.snapshot)
        self.publish(store, WHEEL)
        self.assertEqual(len(seen), 1, "the same bytes again change nothing")
        self.publish(store, wheel_bytes("other", "2.0"))
        self.assertEqual(seen[-1][1], frozenset({"other"}))
        self.successResultOf(store.remove([store.snapshot.files[WHEEL[0]]]))
        self.assertEqual(seen[-1][1], frozenset({"demo-pkg"}))
        self.assertEqual(len(seen), 3)

    # Publishing

    def test_published_file_is_listed_and_served(self):
        store = self.store()
        placed = self.publish(store, WHEEL)
        self.assertEqual(placed, Placed("created", WHEEL[0]))
        f = store.snapshot.files[WHEEL[0]]
        self.assertEqual(self.read(store.open(f)), WHEEL[1])
        self.assertEqual(self.successResultOf(store.readMetadata(f)),
                         metadata_text("Demo_Pkg", "1.0", ">=3.8", (), "A demo").encode())

    def test_listing_describes_the_bytes(self):
        """What the index lists of a published wheel and sdist: digests and metadata fields."""
        store = self.store()
        self.publish(store, WHEEL, signature=SIGNATURE)
        self.publish(store, SDIST)
        wheel, sdist = store.snapshot.files[WHEEL[0]], store.snapshot.files[SDIST[0]]
        metadata = metadata_text("Demo_Pkg", "1.0", ">=3.8", (), "A demo").encode()
        self.assertEqual(
            describe(wheel),
            ("demo-pkg", "Demo_Pkg", Version("1.0"), "wheel", "py3", len(WHEEL[1]),
             hashlib.sha256(WHEEL[1]).hexdigest(), ">=3.8", hashlib.sha256(metadata).hexdigest(), "A demo", True))
        self.assertEqual(
            describe(sdist),
            ("demo-pkg", "Demo_Pkg", Version("1.0"), "sdist", "source", len(SDIST[1]),
             hashlib.sha256(SDIST[1]).hexdigest(), None, None, "The Demo_Pkg test package", False))
        self.assertEqual([g.filename for g in store.snapshot.get("demo-pkg").files],
                         [WHEEL[0], SDIST[0]])

    def test_same_bytes_again_are_identical(self):
        store = self.store()
        self.publish(store, WHEEL)
        generation = store.snapshot.generation
        self.assertEqual(self.publish(store, WHEEL), Placed("identical", WHEEL[0]))
        self.assertEqual(store.snapshot.generation, generation)

    def test_other_bytes_conflict_unless_overwrite(self):
        store = self.store()
        self.publish(store, WHEEL)
        staged = self.staged(store, OTHER_WHEEL[1])
        staged.finish()
        self.failureResultOf(store.publish(WHEEL[0], staged, False), AlreadyStored)
        staged.abort()
        f = store.snapshot.files[WHEEL[0]]
        self.assertEqual(self.read(store.open(f)), WHEEL[1])
        self.assertEqual(self.publish(store, OTHER_WHEEL, overwrite=True), Placed("replaced", WHEEL[0]))
        f = store.snapshot.files[WHEEL[0]]
        self.assertEqual(f.summary, "Changed")
        self.assertEqual(self.read(store.open(f)), OTHER_WHEEL[1])

    def test_signature_is_a_sidecar(self):
        store = self.store()
        self.publish(store, WHEEL, signature=SIGNATURE)
        f = store.snapshot.files[WHEEL[0]]
        self.assertTrue(f.has_sig)
        self.assertEqual(self.read(store.open(f, ".asc")), SIGNATURE)
        self.publish(store, SDIST)
        self.assertIsNone(store.open(store.snapshot.files[SDIST[0]], ".asc"))

    def test_new_file_goes_where_it_is_named_an_existing_one_stays_put(self):
        """A name's folders say where a new file goes; a listed file of that file name is replaced where it is."""
        store = self.store()
        if not self.folders:
            staged = self.staged(store, WHEEL[1])
            staged.finish()
            self.failureResultOf(store.publish("team/" + WHEEL[0], staged, False), BadName)
            staged.abort()
            self.assertEqual(store.snapshot.file_count, 0)
            return
        self.makeFolder(store, "team")
        self.assertEqual(self.publish(store, WHEEL, "team/" + WHEEL[0]), Placed("created", "team/" + WHEEL[0]))
        self.assertEqual(self.publish(store, OTHER_WHEEL, overwrite=True), Placed("replaced", "team/" + WHEEL[0]))
        self.assertEqual(sorted(store.snapshot.files), ["team/" + WHEEL[0]])

    def test_bad_names_are_refused(self):
        store = self.store()
        for name in ("../" + WHEEL[0], "." + WHEEL[0], "a//" + WHEEL[0], "/" + WHEEL[0], "nowhere/" + WHEEL[0]):
            staged = self.staged(store, WHEEL[1])
            staged.finish()
            self.failureResultOf(store.publish(name, staged, False), BadName)
            staged.abort()
        self.assertEqual(store.snapshot.file_count, 0)

    def test_what_would_not_be_listed_is_refused(self):
        """
        Bytes the index would not list (an archive cut short, a wheel with
        bytes before or after its zip) are refused with the reason, and
        nothing is stored: what publish accepts is listed.
        """
        store = self.store()
        filename, data = SDIST
        wheel, zipped = WHEEL
        for name, bad in ((filename, data[: len(data) // 2]), (wheel, b"junk" + zipped), (wheel, zipped + b"junk")):
            staged = self.staged(store, bad)
            staged.finish()
            failure = self.failureResultOf(store.publish(name, staged, False), NotListed)
            self.assertIn("archive", str(failure.value))
            staged.abort()
            self.assertEqual(store.snapshot.files.get(name), None)
            self.assertIsNone(store.snapshot.get("demo-pkg"))
        # Nothing is in the way of the right file.
        self.assertEqual(self.publish(store, WHEEL), Placed("created", wheel))

    # One release file, however its name is spelled

    def test_case_and_spelling_variants_are_the_same_file(self):
        """
        A file whose name differs from a listed one's only in case or
        spelling (its project and version normalised, its tags in another
        order) is that file: other bytes conflict, the same bytes are
        identical, and an overwrite replaces it where it is.
        """
        store = self.store()
        original = ("Casep-1.0-py2.py3-none-any.whl", wheel_bytes("Casep", "1.0")[1])
        other = wheel_bytes("Casep", "1.0", summary="Other bytes")[1]
        self.assertEqual(self.publish(store, original), Placed("created", original[0]))
        for variant in ("casep-1.0-py2.py3-none-any.whl", "CASEP-1.0-PY2.PY3-NONE-ANY.WHL",
                        "casep-1.0.0-py3.py2-none-any.whl"):
            staged = self.staged(store, other)
            staged.finish()
            failure = self.failureResultOf(store.publish(variant, staged, False), AlreadyStored)
            self.assertEqual((failure.value.filename, failure.value.listed), (variant, original[0]))
            staged.abort()
            self.assertEqual(self.publish(store, (variant, original[1])), Placed("identical", original[0]))
            self.assertEqual([f.filename for f in store.snapshot.get("casep").files], [original[0]])
        self.assertEqual(self.publish(store, ("casep-1.0-py2.py3-none-any.whl", other), overwrite=True),
                         Placed("replaced", original[0]))
        f = store.snapshot.files[original[0]]
        self.assertEqual((f.summary, sorted(store.snapshot.files)), ("Other bytes", [original[0]]))
        self.assertEqual(self.read(store.open(f)), other)

    def test_other_files_of_a_release_are_other_files(self):
        """Another build, tag set or archive kind is another file."""
        store = self.store()
        sdist = sdist_bytes("Demo_Pkg", "1.0")[1]
        wheel = WHEEL[1]
        for name, data in (("Demo_Pkg-1.0-py3-none-any.whl", wheel), ("Demo_Pkg-1.0-1-py3-none-any.whl", wheel),
                           ("Demo_Pkg-1.0-py2-none-any.whl", wheel), ("Demo_Pkg-1.0.tar.gz", sdist)):
            self.assertEqual(self.publish(store, (name, data)).outcome, "created", name)
        self.assertEqual(len(store.snapshot.get("demo-pkg").files), 4)

    def test_publish_waits_for_the_first_snapshot(self):
        """A file is placed knowing what is listed: publish waits for readiness."""
        store = self.makeStore()
        staged = self.staged(store, WHEEL[1])
        staged.finish()
        d = store.publish(WHEEL[0], staged, False)
        self.assertNoResult(d)
        self.startStore(store)
        self.assertEqual(self.successResultOf(d), Placed("created", WHEEL[0]))
        staged.abort()

    def test_staged_bytes_read_back_and_digests(self):
        store = self.store()
        staged = self.staged(store, WHEEL[1])
        self.assertEqual(staged.size, len(WHEEL[1]))
        digests = staged.finish()
        self.assertEqual(digests, {
            "sha256": hashlib.sha256(WHEEL[1]).hexdigest(),
            "blake2_256": hashlib.blake2b(WHEEL[1], digest_size=32).hexdigest(),
            "md5": hashlib.md5(WHEEL[1]).hexdigest(),
        })
        self.assertEqual(staged.finish(), digests)
        with staged.reader() as f:
            f.seek(10)
            self.assertEqual(f.read(), WHEEL[1][10:])
        staged.abort()
        staged.abort()
        self.assertEqual(store.snapshot.file_count, 0)

    # Reading

    def test_missing_file_gives_none(self):
        store = self.store()
        self.publish(store, WHEEL)
        f = store.snapshot.files[WHEEL[0]]
        self.assertIsNone(store.open(f._replace(path="nope-1.0-py3-none-any.whl")))
        self.failureResultOf(store.readMetadata(f._replace(path="nope-1.0-py3-none-any.whl")), MetadataError)

    def test_body_reads_a_range(self):
        store = self.store()
        self.publish(store, WHEEL)
        body = store.open(store.snapshot.files[WHEEL[0]])
        self.assertEqual((body.size, body.redirect), (len(WHEEL[1]), None))
        self.assertIsInstance(body.mtime_ns, int)
        data = body.read(100, 50)
        if isinstance(data, Deferred):
            data = self.successResultOf(data)
        self.assertEqual(data, WHEEL[1][100:150])
        body.close()

    def test_body_streams_a_range(self):
        """stream() writes the range with a producer, finishes the request and lets the body go."""
        store = self.store()
        self.publish(store, WHEEL)
        body = store.open(store.snapshot.files[WHEEL[0]])
        request = FakeRequest()
        body.stream(request, 7, body.size - 20)
        self.successResultOf(request.notifyFinish())
        self.assertEqual(b"".join(request.written), WHEEL[1][7:-13])
        self.assertTrue(request.finished)
        self.assertIsNone(request.producer)
        body.close()

    # Removing

    def test_remove(self):
        store = self.store()
        self.publish(store, WHEEL, signature=SIGNATURE)
        self.publish(store, SDIST)
        f = store.snapshot.files[WHEEL[0]]
        self.assertEqual(self.successResultOf(store.remove([f])), [WHEEL[0]])
        self.assertIsNone(store.snapshot.files.get(WHEEL[0]))
        self.assertIsNone(store.open(f))
        self.assertIsNone(store.open(f, ".asc"))
        self.assertEqual(list(store.snapshot.files), [SDIST[0]])
        # Published again: a new file, without the old signature.
        self.assertEqual(self.publish(store, WHEEL), Placed("created", WHEEL[0]))
        self.assertFalse(store.snapshot.files[WHEEL[0]].has_sig)

    # Yanking (PEP 592)

    def yanked(self, store) -> dict:
        return {key: dict(entries) for key, entries in store.snapshot.yanks.items()}

    def test_yank_shows_at_once_and_tells_subscribers(self):
        store = self.store()
        self.publish(store, WHEEL)
        self.publish(store, SDIST)
        seen = []
        store.subscribe(lambda snapshot, changed: seen.append((snapshot, changed)))
        wheel = store.snapshot.files[WHEEL[0]]
        self.assertEqual(self.successResultOf(store.setYanked([wheel], "broken on 3.13")), [WHEEL[0]])
        self.assertEqual(self.yanked(store), {"demo-pkg": {WHEEL[0]: "broken on 3.13"}})
        self.assertEqual(store.snapshot.yank_reason(store.snapshot.files[WHEEL[0]]), "broken on 3.13")
        self.assertIsNone(store.snapshot.yank_reason(store.snapshot.files[SDIST[0]]))
        self.assertEqual([changed for _, changed in seen], [frozenset({"demo-pkg"})])
        self.assertIs(seen[-1][0], store.snapshot)
        # The files themselves are untouched.
        self.assertEqual(store.snapshot.files[WHEEL[0]], wheel)

    def test_yank_is_idempotent_and_the_reason_can_change(self):
        store = self.store()
        self.publish(store, WHEEL)
        wheel = store.snapshot.files[WHEEL[0]]
        self.successResultOf(store.setYanked([wheel], ""))
        generation = store.snapshot.generation
        seen = []
        store.subscribe(lambda snapshot, changed: seen.append(changed))
        self.assertEqual(self.successResultOf(store.setYanked([wheel], "")), [])
        self.assertEqual((store.snapshot.generation, seen), (generation, []))
        self.assertEqual(store.snapshot.yank_reason(wheel), "", "no reason is an empty one")
        self.assertEqual(self.successResultOf(store.setYanked([wheel], "a reason")), [WHEEL[0]])
        self.assertEqual(store.snapshot.yank_reason(wheel), "a reason")
        self.assertEqual(len(seen), 1)

    def test_unyank(self):
        store = self.store()
        self.publish(store, WHEEL)
        self.publish(store, SDIST)
        files = list(store.snapshot.get("demo-pkg").files)
        self.assertEqual(sorted(self.successResultOf(store.setYanked(files, "x"))), sorted([WHEEL[0], SDIST[0]]))
        seen = []
        store.subscribe(lambda snapshot, changed: seen.append(changed))
        self.assertEqual(self.successResultOf(store.setYanked(files[:1], None)), [files[0].filename])
        self.assertEqual(self.yanked(store), {"demo-pkg": {files[1].filename: "x"}})
        self.assertEqual(self.successResultOf(store.setYanked(files, None)), [files[1].filename])
        self.assertEqual(self.yanked(store), {})
        self.assertEqual(self.successResultOf(store.setYanked(files, None)), [])
        self.assertEqual(seen, [frozenset({"demo-pkg"})] * 2)

    def test_a_yank_outlives_a_replaced_file(self):
        """Other bytes over a yanked file's name (--overwrite): still yanked."""
        store = self.store()
        self.publish(store, WHEEL)
        self.successResultOf(store.setYanked([store.snapshot.files[WHEEL[0]]], "old"))
        self.publish(store, OTHER_WHEEL, overwrite=True)
        self.assertEqual(store.snapshot.yank_reason(store.snapshot.files[WHEEL[0]]), "old")

    def test_remove_forgets_the_yank(self):
        store = self.store()
        self.publish(store, WHEEL)
        self.publish(store, SDIST)
        files = list(store.snapshot.get("demo-pkg").files)
        self.successResultOf(store.setYanked(files, "gone soon"))
        self.successResultOf(store.remove([store.snapshot.files[WHEEL[0]]]))
        self.assertEqual(self.yanked(store), {"demo-pkg": {SDIST[0]: "gone soon"}})
        self.publish(store, WHEEL)
        self.assertIsNone(store.snapshot.yank_reason(store.snapshot.files[WHEEL[0]]))

    def test_yanks_of_other_projects_stay(self):
        store = self.store()
        self.publish(store, WHEEL)
        other = wheel_bytes("other", "2.0")
        self.publish(store, other)
        self.successResultOf(store.setYanked([store.snapshot.files[other[0]]], "o"))
        self.successResultOf(store.setYanked([store.snapshot.files[WHEEL[0]]], "w"))
        self.publish(store, wheel_bytes("other", "3.0"))
        self.assertEqual(self.yanked(store), {"other": {other[0]: "o"}, "demo-pkg": {WHEEL[0]: "w"}})


def describe(f: DistFile) -> tuple:
    """What a listing says of a file's bytes (not where or when it was written)."""
    return (f.project, f.name, f.version, f.kind, f.python_version, f.size, f.digest, f.requires_python,
            f.metadata_sha256, f.summary, f.has_sig)


class SerialContract:
    """The serial: every change numbered, never back, and logged for mirrors (mixed in with the contract)."""

    def test_every_change_takes_the_next_serial(self):
        store = self.store()
        start = store.snapshot.serial
        self.publish(store, WHEEL)
        first = store.snapshot.serial
        self.assertGreater(first, start)
        self.assertEqual(store.snapshot.get("demo-pkg").serial, first)
        self.publish(store, WHEEL)
        self.assertEqual(store.snapshot.serial, first, "the same bytes again are no change")
        self.publish(store, wheel_bytes("other", "2.0"))
        second = store.snapshot.serial
        self.assertEqual((second > first, store.snapshot.get("demo-pkg").serial), (True, first))
        self.publish(store, OTHER_WHEEL, overwrite=True)
        third = store.snapshot.serial
        self.assertGreater(third, second)
        self.successResultOf(store.remove([store.snapshot.files["other-2.0-py3-none-any.whl"]]))
        self.assertGreater(store.snapshot.serial, third)
        self.assertEqual(store.snapshot.get("demo-pkg").serial, third)

    def test_changelog(self):
        """What changed after a serial, file by file, oldest first; complete while the log holds it."""
        from pypid.index.changes import ADD, REMOVE, REMOVE_PROJECT

        store = self.store()
        since = store.snapshot.serial
        self.publish(store, WHEEL)
        self.publish(store, SDIST)
        self.publish(store, wheel_bytes("other", "2.0"))
        self.successResultOf(store.remove([store.snapshot.files["other-2.0-py3-none-any.whl"]]))
        answer = self.successResultOf(store.changelog(since))
        self.assertTrue(answer.complete)
        self.assertEqual([(c.action, c.project, c.name, c.version, c.filename) for c in answer.changes], [
            (ADD, "demo-pkg", "Demo_Pkg", "1.0", WHEEL[0]),
            (ADD, "demo-pkg", "Demo_Pkg", "1.0", SDIST[0]),
            (ADD, "other", "other", "2.0", "other-2.0-py3-none-any.whl"),
            (REMOVE, "other", "other", "2.0", "other-2.0-py3-none-any.whl"),
            (REMOVE_PROJECT, "other", "other", "", ""),
        ])
        serials = [c.serial for c in answer.changes]
        self.assertEqual(serials, sorted(serials))
        self.assertTrue(all(1e9 < c.at < 1e11 for c in answer.changes), "seconds since the epoch")
        self.assertEqual(serials[-1], store.snapshot.serial)
        self.assertEqual(len(set(serials)), 4, "one serial per change")
        later = self.successResultOf(store.changelog(serials[1]))
        self.assertEqual(later.changes, answer.changes[2:])
        self.assertEqual(self.successResultOf(store.changelog(store.snapshot.serial)).changes, ())
        ahead = self.successResultOf(store.changelog(store.snapshot.serial + 5))
        self.assertFalse(ahead.complete, "a serial this index never had: the mirror must sync in full")

    def test_a_yank_is_a_numbered_change(self):
        """
        A yank and an unyank are changes of the index: they take serials
        (the project's too; other projects keep theirs) and the change log
        names them file by file; a yank that changes nothing takes none.
        """
        from pypid.index.changes import UNYANK, YANK

        store = self.store()
        self.publish(store, WHEEL)
        self.publish(store, SDIST)
        other = wheel_bytes("other", "2.0")
        self.publish(store, other)
        since = store.snapshot.serial
        other_serial = store.snapshot.get("other").serial
        files = list(store.snapshot.get("demo-pkg").files)
        self.assertEqual([f.filename for f in files], [WHEEL[0], SDIST[0]])
        self.successResultOf(store.setYanked(files, "broken"))
        yanked = store.snapshot.serial
        self.assertGreater(yanked, since)
        self.assertEqual(store.snapshot.get("demo-pkg").serial, yanked)
        self.assertEqual(store.snapshot.get("other").serial, other_serial)
        self.successResultOf(store.setYanked(files, "broken"))
        self.assertEqual(store.snapshot.serial, yanked, "no change, no serial")
        self.successResultOf(store.setYanked(files[:1], None))
        unyanked = store.snapshot.serial
        self.assertGreater(unyanked, yanked)
        self.assertEqual(store.snapshot.get("demo-pkg").serial, unyanked)
        answer = self.successResultOf(store.changelog(since))
        self.assertTrue(answer.complete)
        self.assertEqual([(c.action, c.project, c.name, c.version, c.filename) for c in answer.changes], [
            (YANK, "demo-pkg", "Demo_Pkg", "1.0", WHEEL[0]),
            (YANK, "demo-pkg", "Demo_Pkg", "1.0", SDIST[0]),
            (UNYANK, "demo-pkg", "Demo_Pkg", "1.0", WHEEL[0]),
        ])
        serials = [c.serial for c in answer.changes]
        self.assertEqual(serials, sorted(serials))
        self.assertEqual((serials[0] > since, serials[1] <= yanked, serials[-1]), (True, True, unyanked))
        self.assertEqual(self.successResultOf(store.changelog(yanked)).changes, answer.changes[-1:])

    def test_changelog_of_a_replaced_file(self):
        """Other bytes over a file (overwrite) are logged as a change to that file, at the serial shown."""
        from pypid.index.changes import ADD

        store = self.store()
        self.publish(store, WHEEL)
        since = store.snapshot.serial
        self.publish(store, OTHER_WHEEL, overwrite=True)
        answer = self.successResultOf(store.changelog(since))
        self.assertTrue(answer.complete)
        self.assertEqual(answer.changes[-1][2:], (ADD, "demo-pkg", "Demo_Pkg", "1.0", WHEEL[0]))
        self.assertEqual(answer.changes[-1].serial, store.snapshot.serial)
        self.assertEqual(store.snapshot.get("demo-pkg").serial, store.snapshot.serial)
