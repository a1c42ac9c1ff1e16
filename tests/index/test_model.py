from packaging.version import Version
from twisted.trial.unittest import SynchronousTestCase

from pypid.index.model import DistFile, FileMap, IndexSnapshot


def dist(path, project="foo", version="1.0", name=None, size=10, mtime=1, kind="wheel"):
    return DistFile(
        path=path, root=0, filename=path.rsplit("/", 1)[-1], project=project,
        name=name or project, version=Version(version), kind=kind,
        python_version="py3", build=(), size=size, mtime_ns=mtime, digest="d" * 64,
        requires_python=None, metadata_sha256=None, summary=None,
    )


class SnapshotTests(SynchronousTestCase):
    def test_build_groups_and_sorts(self):
        """Files are grouped by project and sorted by version, newest last."""
        snap = IndexSnapshot.build([
            dist("b/foo-2.0.whl", version="2.0"), dist("foo-1.0.whl"), dist("bar-1.whl", project="bar", version="1"),
            dist("foo-10.0.whl", version="10.0"),
        ])
        self.assertEqual(sorted(snap.projects), ["bar", "foo"])
        self.assertEqual([str(f.version) for f in snap.get("foo").files], ["1.0", "2.0", "10.0"])
        self.assertEqual(snap.file_count, 4)
        self.assertEqual(snap.get("foo").versions, ["1.0", "2.0", "10.0"])

    def test_apply_shares_untouched_projects(self):
        """An update rebuilds only the touched projects and reports them."""
        snap = IndexSnapshot.build([dist("foo-1.0.whl"), dist("bar-1.whl", project="bar", version="1")])
        new, changed = snap.apply([dist("foo-2.0.whl", version="2.0")], [])
        self.assertEqual(changed, frozenset({"foo"}))
        self.assertIs(new.get("bar"), snap.get("bar"))
        self.assertEqual(len(new.get("foo").files), 2)
        self.assertEqual(len(snap.get("foo").files), 1, "the old snapshot is unchanged")
        self.assertEqual(new.generation, snap.generation + 1)

    def test_remove_last_file_removes_project(self):
        snap = IndexSnapshot.build([dist("foo-1.0.whl")])
        new, changed = snap.apply([], ["foo-1.0.whl"])
        self.assertIsNone(new.get("foo"))
        self.assertEqual(changed, frozenset({"foo"}))

    def test_replace_at_same_path(self):
        """A changed file at the same path replaces the old record."""
        snap = IndexSnapshot.build([dist("foo-1.0.whl", size=1)])
        new, changed = snap.apply([dist("foo-1.0.whl", size=2)], ["foo-1.0.whl"])
        self.assertEqual([f.size for f in new.get("foo").files], [2])

    def test_no_change(self):
        """Applying identical records is a no-op returning the same snapshot."""
        snap = IndexSnapshot.build([dist("foo-1.0.whl")])
        new, changed = snap.apply([dist("foo-1.0.whl")], ["missing.whl"])
        self.assertIs(new, snap)
        self.assertEqual(changed, frozenset())

    def test_move_between_projects(self):
        snap = IndexSnapshot.build([dist("x.whl", project="foo")])
        new, changed = snap.apply([dist("x.whl", project="bar")], [])
        self.assertEqual(changed, frozenset({"foo", "bar"}))
        self.assertIsNone(new.get("foo"))
        self.assertEqual(len(new.get("bar").files), 1)

    def test_serial(self):
        """Each change numbers the snapshot and the projects it touched: one more, or the store's own number."""
        snap = IndexSnapshot.build([dist("foo-1.0.whl"), dist("bar-1.whl", project="bar", version="1")])
        self.assertEqual((snap.serial, snap.get("foo").serial), (1, 1))
        new, _ = snap.apply([dist("foo-2.0.whl", version="2.0")], [])
        self.assertEqual((new.serial, new.get("foo").serial, new.get("bar").serial), (2, 2, 1))
        newer, _ = new.apply([], ["bar-1.whl"], serial=40)
        self.assertEqual((newer.serial, newer.get("foo").serial), (40, 2))
        self.assertIs(newer.apply([], ["missing.whl"], serial=41)[0], newer)
        built, _ = IndexSnapshot.empty().apply([dist("foo-1.0.whl")], [], serial=7)
        self.assertEqual((built.serial, built.get("foo").serial), (7, 7))

    def test_display_name_follows_newest(self):
        snap = IndexSnapshot.build([dist("a.whl", name="Old_Name"), dist("b.whl", version="2", name="New.Name")])
        self.assertEqual(snap.get("foo").name, "New.Name")


class DistFileTests(SynchronousTestCase):
    def test_filename_is_the_last_segment(self):
        """The filename is not stored but read off the path; a constructor that disagrees is refused."""
        f = dist("a/b/foo-1.0.whl")
        self.assertEqual(f.filename, "foo-1.0.whl")
        self.assertEqual(dist("foo-1.0.whl").filename, "foo-1.0.whl")
        with self.assertRaises(ValueError):
            DistFile(
                path="a/foo-1.0.whl", root=0, filename="bar-1.0.whl", project="foo", name="foo",
                version=Version("1.0"), kind="wheel", python_version="py3", build=(), size=1, mtime_ns=1,
                digest=None, requires_python=None, metadata_sha256=None, summary=None,
            )

    def test_replace(self):
        f = dist("foo-1.0.whl")
        g = f._replace(has_sig=True, size=3)
        self.assertEqual((g.has_sig, g.size, g.filename, g.version), (True, 3, "foo-1.0.whl", Version("1.0")))
        self.assertFalse(f.has_sig)

    def test_build_is_apply_to_empty(self):
        """Building a snapshot at once gives what applying the files to an empty one gives."""
        files = [
            dist("b/foo-2.0.whl", version="2.0"), dist("foo-1.0.whl"), dist("bar-1.whl", project="bar", version="1"),
            dist("foo-1.0.whl", size=99),
        ]
        built = IndexSnapshot.build(files)
        applied, changed = IndexSnapshot.empty().apply(files, [])
        self.assertEqual(changed, frozenset({"foo", "bar"}))
        self.assertEqual(built.files, applied.files)
        self.assertEqual(built.projects, applied.projects)
        self.assertEqual((built.generation, built.file_count), (1, 3))
        self.assertEqual(built.get("foo").files[0].size, 99)
        same, nothing = IndexSnapshot.empty().apply([], ["x"])
        self.assertEqual((same.generation, nothing), (0, frozenset()))


class FileMapTests(SynchronousTestCase):
    def test_mapping(self):
        """A FileMap answers like the dict of the same files; a later file at a path replaces an earlier one."""
        files = [dist(f"d{i % 7}/foo-{i}.whl", version=str(i)) for i in range(600)]
        files.append(dist("d1/foo-1.whl", version="1", size=99))
        mapping = FileMap(files)
        expected = {f.path: f for f in files}
        self.assertEqual(len(mapping), 600)
        self.assertEqual(dict(mapping.items()), expected)
        self.assertEqual(sorted(mapping), sorted(expected))
        self.assertEqual(mapping["d1/foo-1.whl"].size, 99)
        self.assertIn("d0/foo-0.whl", mapping)
        self.assertNotIn("nope", mapping)
        self.assertIsNone(mapping.get("nope"))
        with self.assertRaises(KeyError):
            mapping["nope"]
        self.assertEqual(mapping, FileMap(reversed(list(expected.values()))))

    def test_apply_copies_only_what_it_changes(self):
        """A change leaves the old snapshot's files as they were and shares the shards it did not touch."""
        snap = IndexSnapshot.build([dist(f"foo-{i}.whl", version=str(i)) for i in range(1000)])
        new, _ = snap.apply([dist("foo-1000.whl", version="1000")], ["foo-3.whl"])
        self.assertEqual((len(snap.files), len(new.files)), (1000, 1000))
        self.assertIn("foo-3.whl", snap.files)
        self.assertNotIn("foo-3.whl", new.files)
        self.assertNotIn("foo-1000.whl", snap.files)
        again, changed = new.apply([], ["missing.whl", "foo-3.whl"])
        self.assertIs(again, new)
        self.assertEqual(changed, frozenset())
        third, _ = new.apply([dist("foo-1001.whl", version="1001")], ["foo-4.whl"])
        shared = sum(a is b for a, b in zip(new.files._shards, third.files._shards))
        self.assertGreaterEqual(shared, len(new.files._shards) - 2)
        self.assertEqual(dict(third.files.items()), {
            **{f.path: f for f in new.files.values() if f.path != "foo-4.whl"}, "foo-1001.whl": third.files["foo-1001.whl"]
        })
        self.assertEqual(len(third.files), 1000)


class OneFilePerReleaseTests(SynchronousTestCase):
    """Names that differ only in case or spelling are one release file: one is listed, the same every time."""

    def files(self):
        return [
            dist("Casep-1.0-py3-none-any.whl", project="casep", mtime=5),
            dist("casep-1.0-py3-none-any.whl", project="casep", mtime=3),
            dist("sub/CASEP-1.0.0-PY3-NONE-ANY.WHL", project="casep", version="1.0.0", mtime=3),
            dist("casep-1.0.tar.gz", project="casep", kind="sdist"),
            dist("casep-1.0-py2-none-any.whl", project="casep"),
        ]

    def test_one_listed_whatever_the_order(self):
        """The oldest is listed, then by path; the others are shadowed, counted out, and stay in files."""
        import itertools

        seen = set()
        for order in itertools.permutations(self.files()):
            snap = IndexSnapshot.build(order)
            project = snap.get("casep")
            seen.add(tuple(f.path for f in project.files))
            self.assertEqual([f.path for f in project.shadowed],
                             ["Casep-1.0-py3-none-any.whl", "sub/CASEP-1.0.0-PY3-NONE-ANY.WHL"])
            self.assertEqual((snap.file_count, len(snap.files), snap.shadowed), (3, 5, 2))
            self.assertFalse(snap.listed(snap.files["Casep-1.0-py3-none-any.whl"]))
            self.assertTrue(snap.listed(snap.files["casep-1.0-py3-none-any.whl"]))
        self.assertEqual(seen, {("casep-1.0-py2-none-any.whl", "casep-1.0-py3-none-any.whl", "casep-1.0.tar.gz")})

    def test_apply_keeps_the_rule(self):
        """Files come and go one by one: the listing is what a build of the same files gives."""
        files = self.files()
        snap = IndexSnapshot.build([files[3]])
        for f in files:
            snap, _ = snap.apply([f], [])
        self.assertEqual([f.path for f in snap.get("casep").files],
                         [f.path for f in IndexSnapshot.build(files).get("casep").files])
        self.assertEqual((snap.file_count, snap.shadowed), (3, 2))
        # The listed one goes: the next in line is listed.
        snap, changed = snap.apply([], ["casep-1.0-py3-none-any.whl"])
        self.assertEqual(changed, frozenset({"casep"}))
        self.assertIn("sub/CASEP-1.0.0-PY3-NONE-ANY.WHL", [f.path for f in snap.get("casep").files])
        self.assertEqual((snap.file_count, snap.shadowed), (3, 1))
        snap, _ = snap.apply([], ["sub/CASEP-1.0.0-PY3-NONE-ANY.WHL"])
        self.assertIn("Casep-1.0-py3-none-any.whl", [f.path for f in snap.get("casep").files])
        self.assertEqual((snap.file_count, snap.shadowed), (3, 0))
class YankSnapshotTests(SynchronousTestCase):
    def test_yanks_ride_along_file_changes(self):
        snap = IndexSnapshot.build([dist("foo-1.0.whl")])
        yanked, changed = snap.with_yanks({"foo": {"foo-1.0.whl": "r"}})
        self.assertEqual((changed, yanked.generation), (frozenset({"foo"}), snap.generation + 1))
        self.assertIs(yanked.files, snap.files)
        self.assertEqual((yanked.serial, yanked.get("foo").serial), (snap.serial + 1, snap.serial + 1),
                         "a yank is a change: numbered, and so is its project")
        self.assertEqual(snap.yanks, {}, "the old snapshot is untouched")
        later, _ = yanked.apply([dist("foo-2.0.whl", version="2.0")], ["foo-1.0.whl"])
        self.assertEqual(dict(later.yanked("foo")), {"foo-1.0.whl": "r"})
        self.assertEqual(later.yank_reason(dist("foo-1.0.whl")), "r")
        self.assertIsNone(later.yank_reason(dist("foo-2.0.whl", version="2.0")))

    def test_first_scan_keeps_yanks_read_before_it(self):
        empty, _ = IndexSnapshot.empty().with_yanks({"foo": {"foo-1.0.whl": ""}})
        scanned, _ = empty.apply([dist("foo-1.0.whl")], [])
        self.assertEqual(scanned.yank_reason(dist("foo-1.0.whl")), "")

    def test_no_change_no_snapshot(self):
        snap, _ = IndexSnapshot.build([dist("foo-1.0.whl")]).with_yanks({"foo": {"foo-1.0.whl": "r"}})
        self.assertEqual(snap.with_yanks({"foo": {"foo-1.0.whl": "r"}, "bar": {}}), (snap, frozenset()))
        cleared, changed = snap.with_yanks({"foo": {}})
        self.assertEqual((dict(cleared.yanks), changed), ({}, frozenset({"foo"})))


class SerialTests(SynchronousTestCase):
    """The index's serial: the number of the last change, and per project of the last change to it."""

    def test_build_and_apply_number_changes(self):
        snap = IndexSnapshot.build([dist("foo-1.0.whl"), dist("bar-1.whl", project="bar", version="1")])
        self.assertEqual((snap.serial, snap.get("foo").serial, snap.get("bar").serial), (1, 1, 1))
        new, _ = snap.apply([dist("foo-2.0.whl", version="2.0")], [])
        self.assertEqual((new.serial, new.get("foo").serial, new.get("bar").serial), (2, 2, 1))
        self.assertIs(new.get("bar"), snap.get("bar"))
        given, _ = new.apply([], ["bar-1.whl"], serial=40)
        self.assertEqual((given.serial, given.get("foo").serial), (40, 2))
        self.assertIsNone(given.get("bar"))

    def test_serial_never_goes_back(self):
        """A change numbered below the snapshot's serial (a replica replaying) leaves the snapshot's serial."""
        snap, _ = IndexSnapshot.empty().apply([dist("foo-1.0.whl")], [], serial=10)
        self.assertEqual(snap.serial, 10)
        new, _ = snap.apply([dist("foo-2.0.whl", version="2.0")], [], serial=7)
        self.assertEqual((new.serial, new.get("foo").serial), (10, 7))

    def test_no_change_no_serial(self):
        snap = IndexSnapshot.build([dist("foo-1.0.whl")], serial=5)
        same, changed = snap.apply([dist("foo-1.0.whl")], [], serial=6)
        self.assertIs(same, snap)
        self.assertEqual(same.serial, 5)

    def test_with_serials(self):
        """Serials learnt after the files (a store's own records) are set per project, sharing the files."""
        snap = IndexSnapshot.build([dist("foo-1.0.whl"), dist("bar-1.whl", project="bar", version="1")], serial=9)
        tagged = snap.with_serials({"foo": 3, "gone": 8}, serial=12)
        self.assertEqual((tagged.serial, tagged.get("foo").serial, tagged.get("bar").serial), (12, 3, 9))
        self.assertIs(tagged.files, snap.files)
        self.assertIs(tagged.get("bar"), snap.get("bar"))
        self.assertNotIn("gone", tagged.projects)
        self.assertEqual(tagged.with_serials({}, serial=2).serial, 12)
