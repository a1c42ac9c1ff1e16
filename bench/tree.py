"""
A deterministic synthetic package tree for the benchmark: N projects x K
files (wheels and sdists, odd names, nested folders), one large wheel, and
pre-rendered pages of the same index for nginx (the practical ceiling).
"""

from __future__ import annotations

import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pypid.index import render  # noqa: E402
from pypid.store.directory.scan import scan  # noqa: E402
from pypid.index.model import IndexSnapshot  # noqa: E402
from pypid.store.metadata import read_wheel_metadata  # noqa: E402
from pypid.testing import sdist_bytes, wheel_bytes, write_dist  # noqa: E402

STYLES = ["{}", "{}_Tools", "Py.{}", "{}-client", "ZZ_{}.Ext"]
WORDS = ["acme", "billing", "orbit", "delta", "nimbus", "quartz", "ember", "tango", "lumen", "vortex"]
MTIME = 1_700_000_000


def project_name(i: int) -> str:
    word = WORDS[i % len(WORDS)] + str(i)
    return STYLES[i % len(STYLES)].format(word)


def dependencies(i: int, projects: int) -> list[str]:
    """A few dependencies on lower-numbered projects, so resolvers have work."""
    rng = random.Random(i)
    return sorted({project_name(rng.randrange(i)) for _ in range(min(i, 3))}) if i else []


def generate(root: str, projects: int, files: int, large_mb: int = 64) -> None:
    """Write the tree under C{root}/packages (skipped when already complete)."""
    packages = os.path.join(root, "packages")
    marker = os.path.join(root, ".complete")
    if os.path.exists(marker):
        return
    for i in range(projects):
        name = project_name(i)
        folder = os.path.join(packages, f"team{i % 20:02d}", name[0].lower())
        requires = dependencies(i, projects)
        for k in range(files):
            version = f"{k // 2 + 1}.{k % 2}.0"
            built = (sdist_bytes if k % 3 == 2 else wheel_bytes)(
                name, version, requires_python=">=3.8", requires=requires
            )
            write_dist(folder, built, mtime=MTIME + k)
    write_dist(os.path.join(packages, "large"), wheel_bytes("large-wheel", "1.0", padding=large_mb * 1024 * 1024),
               mtime=MTIME)
    open(marker, "w").close()


def burst_name(i: int) -> str:
    return STYLES[i % len(STYLES)].format(f"burst{i}")


def generate_burst(root: str, count: int, files: int = 5) -> str:
    """
    Write C{count} new files (C{count // files} projects that are not in any
    tree, C{files} wheels and sdists each, nested like the tree) under
    C{root}, once; the benchmark copies them into a tree as one burst.
    Returns C{root}.
    """
    marker = os.path.join(root, ".complete")
    if os.path.exists(marker):
        return root
    for i in range(count // files):
        name = burst_name(i)
        folder = os.path.join(root, f"b{i % 20:02d}", name[0].lower())
        for k in range(files):
            version = f"{k // 2 + 1}.{k % 2}.0"
            built = (sdist_bytes if k % 3 == 2 else wheel_bytes)(name, version, requires_python=">=3.8")
            write_dist(folder, built, mtime=MTIME + k)
    open(marker, "w").close()
    return root


def prerender(root: str) -> str:
    """
    Render the same pages pypid serves into C{root}/static for nginx, with
    the wheels' .metadata files, and link the packages in. Returns the dir.
    """
    static = os.path.join(root, "static")
    marker = os.path.join(static, ".complete")
    packages = os.path.abspath(os.path.join(root, "packages"))
    link = os.path.join(static, "packages")
    if os.path.islink(link) and os.readlink(link) != packages:
        # A link made from a relative root points nowhere from inside static/.
        os.unlink(link)
        os.symlink(packages, link)
    if os.path.exists(marker):
        return static
    result = scan([packages], "sha256", {})
    snapshot = IndexSnapshot.build(result.added)
    os.makedirs(os.path.join(static, "simple"), exist_ok=True)
    with open(os.path.join(static, "simple", "index.html"), "wb") as f:
        f.write(render.index_html(snapshot))
    for key, project in snapshot.projects.items():
        directory = os.path.join(static, "simple", key)
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "index.html"), "wb") as f:
            f.write(render.project_html(project, "sha256"))
    if not os.path.lexists(link):
        os.symlink(packages, link)
    metadata = os.path.join(static, "metadata")
    for f in snapshot.files.values():
        if f.metadata_sha256:
            target = os.path.join(metadata, f.path + ".metadata")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as out:
                out.write(read_wheel_metadata(os.path.join(packages, f.path)))
    open(marker, "w").close()
    return static


if __name__ == "__main__":
    generate(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
    prerender(sys.argv[1])
