"""
C{pypid git-init BARE_REPO PACKAGE_DIR}: make C{git push} an upload method.

Creates (or configures) a bare repository whose C{post-receive} hook checks
the pushed branch out into the package directory. The watcher then lists
the new files within a fraction of a second; files deleted in the
repository are deleted from the directory, and so from the index. Files in
the directory that git does not track (HTTP or FTP uploads, pypid's hidden
state) are left alone, and pypid's own (the upload spool, the state
directory, the yanks) are in the repository's C{info/exclude}: C{git status} of the
checkout never shows them.

The settings live in the repository's config (C{pypid.packages},
C{pypid.branch}): running the command again changes them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Optional

from pypid.atomic import replacing

MARKER = "# pypid git-init hook"

HOOK = """#!/bin/sh
# pypid git-init hook: checks the pushed branch out into the package directory.
# Settings: git config pypid.packages / pypid.branch (or run 'pypid git-init' again).
set -eu
GIT_DIR=$(cd "${GIT_DIR:-.}" && pwd)
export GIT_DIR
unset GIT_WORK_TREE
packages=$(git config --get pypid.packages)
branch=$(git config --get pypid.branch || echo main)
# One checkout at a time when pushes race each other.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$GIT_DIR/pypid-checkout.lock"
    flock 9
fi
while read -r old new ref; do
    [ "$ref" = "refs/heads/$branch" ] || continue
    case "$new" in
        *[!0]*) ;;
        *) echo "pypid: branch $branch deleted; $packages left as it is" >&2; continue ;;
    esac
    mkdir -p "$packages"
    # The index remembers the last checkout: files it tracked that the new
    # commit no longer has are deleted; untracked files are left alone.
    git --work-tree="$packages" read-tree -u --reset "$new"
    echo "pypid: $packages now holds $branch at $(git rev-parse --short "$new")" >&2
done
"""

USAGE = "pypid git-init [--branch BRANCH] [--force] BARE_REPO PACKAGE_DIR"


class GitInitError(Exception):
    pass


def _git(*args: str, cwd: Optional[str] = None) -> str:
    try:
        result = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise GitInitError("git is not installed (apt install git)")
    if result.returncode != 0:
        raise GitInitError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def _write_hook(path: str, force: bool) -> None:
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            existing = f.read()
        if MARKER not in existing and not force:
            raise GitInitError(
                f"{path} exists and was not written by pypid; move it away or use --force"
            )
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    with replacing(path, prefix=".post-receive-", suffix="", mode=0o755, text=True) as f:
        f.write(HOOK)


#: What pypid itself keeps in a package directory (the upload spool, while
#: an upload is in flight; the default state directory; the yanks and, with
#: --no-filename-reuse, the removed names): git status in the checkout never
#: shows them while git does not track them.
EXCLUDED = ("/.pypid-incoming/", "/.pypid/", "/.pypid-yanked", "/.pypid-removed")


def _exclude(repo: str) -> None:
    """Add L{EXCLUDED} to the repository's C{info/exclude} (what it lacks)."""
    path = os.path.join(repo, "info", "exclude")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    missing = [line for line in EXCLUDED if line not in text.splitlines()]
    if not missing:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if text and not text.endswith("\n"):
        text += "\n"
    text += "# pypid's own files in the package directory (pypid git-init)\n" + "\n".join(missing) + "\n"
    with replacing(path, prefix=".exclude-", suffix="", text=True) as f:
        f.write(text)


def git_init(repo: str, packages: str, branch: str = "main", force: bool = False) -> str:
    """
    Create or configure the bare repository C{repo} to check C{branch} out
    into C{packages} on every push. Returns the repository's absolute path.
    """
    repo = os.path.abspath(os.path.expanduser(repo))
    packages = os.path.abspath(os.path.expanduser(packages))
    if os.path.exists(repo) and os.listdir(repo):
        if _git("rev-parse", "--is-bare-repository", cwd=repo) != "true":
            raise GitInitError(f"{repo} exists and is not a bare git repository")
    else:
        _git("init", "--quiet", "--bare", repo)
        _git("symbolic-ref", "HEAD", f"refs/heads/{branch}", cwd=repo)
    os.makedirs(packages, exist_ok=True)
    _git("config", "pypid.packages", packages, cwd=repo)
    _git("config", "pypid.branch", branch, cwd=repo)
    _write_hook(os.path.join(repo, "hooks", "post-receive"), force)
    _exclude(repo)
    return repo


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="pypid git-init",
        description="Create or configure a bare git repository whose pushes are "
        "checked out into a pypid package directory.",
    )
    parser.add_argument("repo", metavar="BARE_REPO")
    parser.add_argument("packages", metavar="PACKAGE_DIR")
    parser.add_argument("--branch", default="main", help="the branch to check out (default: main)")
    parser.add_argument("--force", action="store_true",
                        help="replace a post-receive hook not written by pypid")
    args = parser.parse_args(argv)
    try:
        repo = git_init(args.repo, args.packages, args.branch, args.force)
    except (GitInitError, OSError) as e:
        print(f"pypid git-init: {e}", file=sys.stderr)
        return 1
    print(
        f"{repo}: pushes to '{args.branch}' are checked out into "
        f"{os.path.abspath(args.packages)}.\n"
        "Push to it from a repository of wheels and sdists:\n"
        f"  git remote add pypid ssh://USER@HOST{repo}   # from another machine\n"
        f"  git remote add pypid file://{repo}           # on this machine\n"
        f"  git push pypid HEAD:{args.branch}"
    )
    return 0
