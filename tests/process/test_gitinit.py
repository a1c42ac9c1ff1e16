"""git push as an upload method: a real bare repo made by 'pypid git-init', real pushes, real pip."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from pypid.testing import sdist_bytes, wheel_bytes, write_dist
from tests.needs import needs

pytestmark = needs(shutil.which("git"), "git is not installed (apt-get install git; .ci/run does)")


def run(args, cwd=None, env=None):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def git(*args, cwd):
    return run(["git", "-c", "user.name=Test", "-c", "user.email=test@example.invalid",
                "-c", "init.defaultBranch=main", *args], cwd=cwd)


def pypid(*args):
    return run([sys.executable, "-m", "pypid.cli", *args])


def wait_for(predicate, timeout):
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not true after {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - start


def listed(server, project):
    status, _, body = server.get(f"simple/{project}/")
    return body.decode() if status == 200 else ""


def test_git_init_push_install_and_delete(tmp_path, packages, start_server, env):
    bare = tmp_path / "index.git"
    out = pypid("git-init", str(bare), str(packages))
    assert f"file://{bare}" in out and "ssh://" in out
    server = start_server("--rescan-interval", "0", str(packages))
    # Something uploaded otherwise (not tracked by git) must survive the pushes.
    write_dist(str(packages), wheel_bytes("uploaded", "1.0"))

    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", cwd=work)
    write_dist(str(work / "team"), wheel_bytes("pushed-pkg", "1.0"))
    write_dist(str(work / "team"), sdist_bytes("pushed-pkg", "1.0"))
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "first release", cwd=work)
    git("remote", "add", "pypid", f"file://{bare}", cwd=work)
    pushed = git("push", "pypid", "HEAD:main", cwd=work)
    assert "pypid:" in pushed
    took = wait_for(lambda: "pushed_pkg-1.0-py3-none-any.whl" in listed(server, "pushed-pkg"), timeout=5)
    assert took < 1.0
    target = tmp_path / "target"
    run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target),
         "--index-url", server.url + "simple/", "pushed-pkg==1.0"], env=env)
    assert (target / "pushed_pkg" / "__init__.py").exists()

    # A second push removing the files: gone from the directory and the index.
    git("rm", "-q", "-r", "team", cwd=work)
    write_dist(str(work), wheel_bytes("other", "2.0"))
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "withdraw pushed-pkg", cwd=work)
    git("push", "pypid", "HEAD:main", cwd=work)
    wait_for(lambda: listed(server, "pushed-pkg") == "" and "other-2.0" in listed(server, "other"), timeout=5)
    assert not (packages / "team").exists()
    assert "uploaded-1.0" in listed(server, "uploaded")


def test_git_init_reconfigures_and_refuses_foreign_hooks(tmp_path):
    bare = tmp_path / "repo.git"
    pypid("git-init", "--branch", "release", str(bare), str(tmp_path / "a"))
    pypid("git-init", "--branch", "release", str(bare), str(tmp_path / "b"))
    assert git("config", "pypid.packages", cwd=bare).strip() == str(tmp_path / "b")
    hook = bare / "hooks" / "post-receive"
    assert os.access(hook, os.X_OK)
    hook.write_text("#!/bin/sh\necho mine\n")
    result = subprocess.run([sys.executable, "-m", "pypid.cli", "git-init", str(bare), str(tmp_path / "b")],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "not written by pypid" in result.stderr
    notrepo = tmp_path / "plain"
    notrepo.mkdir()
    (notrepo / "file").write_text("x")
    result = subprocess.run([sys.executable, "-m", "pypid.cli", "git-init", str(notrepo), str(tmp_path / "b")],
                            capture_output=True, text=True)
    assert result.returncode == 1


def test_pypid_files_are_excluded(tmp_path, packages):
    """What pypid writes in a git-fed package directory never shows in git status (issue 19 item 7)."""
    from pypid.feed.rules import REMOVED_FILE
    from pypid.store.directory.landing import INCOMING
    from pypid.store.directory.yankfile import YANKS_FILE

    bare = tmp_path / "index.git"
    pypid("git-init", str(bare), str(packages))
    for name in (YANKS_FILE, REMOVED_FILE, f"{INCOMING}/.upload-x.part", ".pypid/cache.sqlite3"):
        (packages / name).parent.mkdir(parents=True, exist_ok=True)
        (packages / name).write_text("x")
    status = git("--git-dir", str(bare), "--work-tree", str(packages), "status", "--porcelain",
                 "--untracked-files=all", cwd=tmp_path)
    assert status == ""
    (packages / "new-1.0.tar.gz").write_text("x")
    assert git("--git-dir", str(bare), "--work-tree", str(packages), "status", "--porcelain",
               cwd=tmp_path) == "?? new-1.0.tar.gz\n"


def test_other_branches_are_not_checked_out(tmp_path, packages):
    bare = tmp_path / "index.git"
    pypid("git-init", str(bare), str(packages))
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", cwd=work)
    write_dist(str(work), wheel_bytes("draft", "0.1"))
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "draft", cwd=work)
    git("push", f"file://{bare}", "HEAD:refs/heads/wip", cwd=work)
    assert os.listdir(packages) == []
