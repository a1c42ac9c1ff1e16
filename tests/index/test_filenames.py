from packaging.version import Version
from twisted.trial.unittest import SynchronousTestCase

from pypid.index.filenames import is_hidden_or_temporary, parse_filename

# filename -> (project, version, kind, python_version)
CASES = {
    "foo-1.0-py3-none-any.whl": ("foo", "1.0", "wheel", "py3"),
    "Foo_Bar-2.0.1-py2.py3-none-any.whl": ("foo-bar", "2.0.1", "wheel", "py2.py3"),
    "foo_bar-1.0-1-py3-none-any.whl": ("foo-bar", "1.0", "wheel", "py3"),
    "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl": ("numpy", "1.26.4", "wheel", "cp311"),
    "torch-2.1.0+cpu-cp311-cp311-linux_x86_64.whl": ("torch", "2.1.0+cpu", "wheel", "cp311"),
    "zope.interface-5.5.2-cp311-cp311-win_amd64.whl": ("zope-interface", "5.5.2", "wheel", "cp311"),
    "foo-1.0.tar.gz": ("foo", "1.0", "sdist", "source"),
    "foo_bar-1.0.post1.tar.gz": ("foo-bar", "1.0.post1", "sdist", "source"),
    "Foo.Bar-1.0rc1.zip": ("foo-bar", "1.0rc1", "sdist", "source"),
    "foo-bar-1.0.tar.gz": ("foo-bar", "1.0", "sdist", "source"),
    "foo-bar-baz-2.0.dev3.tar.gz": ("foo-bar-baz", "2.0.dev3", "sdist", "source"),
    "foo-bar-1.0-beta.tar.gz": ("foo-bar", "1.0b0", "sdist", "source"),
    "pkg-1!2.0.tar.gz": ("pkg", "1!2.0", "sdist", "source"),
    "legacy-0.9.tar.bz2": ("legacy", "0.9", "sdist", "source"),
    "legacy-0.9.tgz": ("legacy", "0.9", "sdist", "source"),
    "legacy-0.9.tar.xz": ("legacy", "0.9", "sdist", "source"),
    "Legacy_Pkg-0.9.TAR.GZ": ("legacy-pkg", "0.9", "sdist", "source"),
    "setuptools_egg-1.0-py2.7.egg": ("setuptools-egg", "1.0", "egg", "py2.7"),
    "plain-3.1.egg": ("plain", "3.1", "egg", ""),
    "x-1.0-py3-none-any.whl": ("x", "1.0", "wheel", "py3"),
}

UNLISTED = [
    "README.txt",
    "foo.whl",
    "foo-1.0.tar.gz.part",
    "foo-1.0-py3-none-any.whl.tmp",
    ".foo-1.0.tar.gz",
    "foo-1.0.tar.gz~",
    "noversion.zip",
    "foo-notaversion.tar.gz",
    "foo-1.0-py3-none.whl",
    "foo-1.0.linux-x86_64.tar.gz",
    "foo-1.0.tar.zst",
    "foo-1.0.rpm",
    "foo-1.0-py3-none-any.whl.metadata",
    "-1.0.tar.gz",
    "foo-1.0-x1-py3-none-any.whl",
    "foo+bar-1.0-py3-none-any.whl",
    "foo-1.0-py3-none-any-extra-parts-here.whl",
]


class ParseFilenameTests(SynchronousTestCase):
    def test_listed(self):
        """Real-world wheel, sdist and legacy names parse to project and version."""
        for filename, (project, version, kind, python) in CASES.items():
            parsed = parse_filename(filename)
            self.assertIsNotNone(parsed, filename)
            self.assertEqual(
                (parsed.project, parsed.version, parsed.kind, parsed.python_version),
                (project, Version(version), kind, python),
                filename,
            )

    def test_unlisted(self):
        """Unparseable, hidden and temporary names are not distributions."""
        for filename in UNLISTED:
            self.assertIsNone(parse_filename(filename), filename)

    def test_build_tag(self):
        self.assertEqual(parse_filename("foo-1.0-2b-py3-none-any.whl").build, (2, "b"))

    def test_display_name(self):
        """The name keeps the filename's spelling; the project is normalised."""
        parsed = parse_filename("Foo_Bar-1.0-py3-none-any.whl")
        self.assertEqual((parsed.name, parsed.project), ("Foo_Bar", "foo-bar"))

    def test_packagetype(self):
        self.assertEqual(parse_filename("a-1-py3-none-any.whl").packagetype, "bdist_wheel")
        self.assertEqual(parse_filename("a-1.tar.gz").packagetype, "sdist")

    def test_temporary(self):
        self.assertTrue(is_hidden_or_temporary(".incoming-abc"))
        self.assertTrue(is_hidden_or_temporary("a-1.whl.crdownload"))
        self.assertFalse(is_hidden_or_temporary("a-1.tar.gz"))

    def test_shared_values(self):
        """Files of one project and version share one key string and one Version, whatever their kind."""
        wheel = parse_filename("Foo_Bar-1.0-py3-none-any.whl")
        sdist = parse_filename("Foo_Bar-1.0.tar.gz")
        other = parse_filename("baz-1.0.zip")
        self.assertIs(wheel.project, sdist.project)
        self.assertIs(wheel.version, sdist.version)
        self.assertIs(other.version, wheel.version)

    def test_version_order(self):
        """version_order sorts and compares exactly like packaging's Version, on odd and random versions."""
        import itertools
        import random

        from pypid.index.filenames import version_order

        odd = [
            "0", "0.0", "1", "1.0", "1.0.0", "1.0.0.0.1", "1.2.3.4.5", "0.9.9", "10.0", "1!0.1", "2!1.0", "1!1.0",
            "1.0.dev0", "1.0.dev1", "1.0.dev", "1.0-dev3", "1.0a0", "1.0a", "1.0a1", "1.0alpha2", "1.0a1.dev1",
            "1.0a1.post1", "1.0a1.post1.dev1", "1.0b2", "1.0c1", "1.0rc1", "1.0pre1", "1.0rc1.dev3",
            "1.0.post0", "1.0.post1", "1.0-1", "1.0post", "1.0.post1.dev2", "1.0+0", "1.0+01", "1.0+2",
            "1.0+a", "1.0+A", "1.0+local", "1.0+local.2", "1.0+abc.1", "1.0+1.abc", "1.0+1.abc.2", "1.0.0+1",
            "1.0.post1+x", "1.0.dev1+x", "0.0.dev0",
        ]
        rng = random.Random(503)
        for _ in range(300):
            parts = [f"{rng.choice(['', '1!', '2!'])}{'.'.join(str(rng.randrange(3)) for _ in range(rng.randrange(1, 4)))}"]
            if rng.random() < 0.4:
                parts.append(f"{rng.choice(['a', 'b', 'rc'])}{rng.randrange(3)}")
            if rng.random() < 0.3:
                parts.append(f".post{rng.randrange(3)}")
            if rng.random() < 0.3:
                parts.append(f".dev{rng.randrange(3)}")
            if rng.random() < 0.3:
                parts.append("+" + ".".join(rng.choice(["0", "1", "2", "a", "b", "x1"]) for _ in range(rng.randrange(1, 3))))
            odd.append("".join(parts))
        versions = [Version(v) for v in odd]
        for a, b in itertools.product(versions, repeat=2):
            ka, kb = version_order(a), version_order(b)
            self.assertEqual((ka < kb, ka == kb, ka > kb), (a < b, a == b, a > b), (str(a), str(b)))
