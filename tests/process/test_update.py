"""pypid update against a local upstream: reports, --pre, -x downloads, hash checks."""

from __future__ import annotations

import os
import subprocess
import sys

from packaging.version import Version
from twisted.trial.unittest import SynchronousTestCase

from pypid.testing import sdist_bytes, wheel_bytes, write_dist
from pypid.feed.update import files_to_fetch, newer_version, newest_local
from pypid.upstream.records import UpstreamFile, UpstreamProject
from tests.server import ROOT
from tests.process.test_upstream_http import FakeUpstream, installed, run


def pypid(*args, env=None):
    return subprocess.run([sys.executable, "-m", "pypid.cli", *args], capture_output=True, text=True,
                          timeout=120, env=dict(env or os.environ, PYTHONPATH=str(ROOT)))


def record(filename, yanked=False):
    return UpstreamFile(filename, "http://up.test/" + filename, (("sha256", "0" * 64),), yanked=yanked)


class PureTests(SynchronousTestCase):
    def test_newest_local(self):
        found = newest_local([("a", "demo-1.0.tar.gz"), ("b", "Demo-2.0-py3-none-any.whl"), ("c", "junk.txt")])
        self.assertEqual(found["demo"].version, Version("2.0"))
        self.assertEqual(found["demo"].directory, "b")

    def test_pre_releases_only_when_asked(self):
        project = UpstreamProject("demo", (
            record("demo-1.0.tar.gz"), record("demo-1.1.tar.gz"), record("demo-1.2.tar.gz", yanked=True),
            record("demo-2.0b1.tar.gz"), record("other-9.0.tar.gz")), ())
        self.assertEqual(newer_version(project, Version("1.0"), pre=False), Version("1.1"))
        self.assertEqual(newer_version(project, Version("1.0"), pre=True), Version("2.0b1"))
        self.assertIsNone(newer_version(project, Version("1.1"), pre=False))

    def test_wheels_preferred(self):
        project = UpstreamProject("demo", (
            record("demo-1.0.tar.gz"), record("demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"),
            record("demo-1.0-py3-none-any.whl")), ())
        self.assertEqual([f.filename for f in files_to_fetch(project, Version("1.0"))], ["demo-1.0-py3-none-any.whl"])
        project = project._replace(files=project.files[:2])
        self.assertEqual([f.filename for f in files_to_fetch(project, Version("1.0"))], ["demo-1.0.tar.gz"])
        project = project._replace(files=project.files[1:])
        self.assertEqual(len(files_to_fetch(project, Version("1.0"))), 1)


def test_update_reports_and_downloads(start_server, env, tmp_path):
    upstream_dir = tmp_path / "upstream"
    for version in ("1.0", "1.1", "2.0b1"):
        write_dist(str(upstream_dir), wheel_bytes("demo", version))
    write_dist(str(upstream_dir), sdist_bytes("demo", "1.1"))
    write_dist(str(upstream_dir), wheel_bytes("current", "3.0"))
    upstream = start_server(str(upstream_dir))
    local = tmp_path / "local"
    write_dist(str(local / "sub"), wheel_bytes("demo", "1.0"))
    write_dist(str(local), wheel_bytes("current", "3.0"))
    write_dist(str(local), wheel_bytes("private-only", "1.0"))
    url = upstream.url + "simple/"

    result = pypid("update", str(local), "--fallback-url", url)
    assert result.returncode == 0, result.stderr
    assert "# update demo from 1.0 to 1.1" in result.stdout
    assert "# current: 3.0 is up to date" in result.stdout
    assert "# private-only: not on the upstream" in result.stdout
    assert "# update demo from 1.0 to 2.0b1" in pypid("update", "--pre", str(local), "--fallback-url", url).stdout
    assert sorted(os.listdir(local / "sub")) == ["demo-1.0-py3-none-any.whl"], "nothing downloaded without -x"

    result = pypid("update", "-x", str(local), "--fallback-url", url)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(local / "sub")) == ["demo-1.0-py3-none-any.whl", "demo-1.1-py3-none-any.whl"]
    assert (local / "sub" / "demo-1.1-py3-none-any.whl").read_bytes() == (
        upstream_dir / "demo-1.1-py3-none-any.whl").read_bytes()

    run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(local / "sub"),
         "--target", str(tmp_path / "t1"), "demo==1.1"], env)
    assert installed(tmp_path / "t1") == ["demo-1.1.dist-info"]
    upstream.stop()
    server = start_server(str(local))
    run([sys.executable, "-m", "pip", "install", "--index-url", server.url + "simple/",
         "--target", str(tmp_path / "t2"), "demo"], env)
    assert installed(tmp_path / "t2") == ["demo-1.1.dist-info"]


def test_update_refuses_a_wrong_hash(tmp_path):
    upstream = FakeUpstream(tmp_path / "fake")
    try:
        name = upstream.add(wheel_bytes("demo", "2.0"))
        upstream.configure(hashes={name: "0" * 64})
        local = tmp_path / "local"
        write_dist(str(local), wheel_bytes("demo", "1.0"))
        result = pypid("update", "-x", str(local), "--fallback-url", upstream.url)
        assert result.returncode == 1
        assert "does not match" in result.stderr
        assert sorted(os.listdir(local)) == ["demo-1.0-py3-none-any.whl"]
    finally:
        upstream.stop()
