"""
docs/architecture.md against the code: every module and folder it names
exists, every package of C{pypid/} (and every module at its top, what
C{ls pypid} shows) is named in it, and the imports of pypid's modules go
the one way it describes.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from typing import Iterator, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPID = ROOT / "pypid"
DOC = ROOT / "docs" / "architecture.md"

#: Path-like words: runs of name characters with at least one slash, not
#: part of a URL path (C{/simple/}) or of a longer word.
_PATH = re.compile(r"(?<![\w/.:+~-])((?:[\w.-]+/)+[\w.-]*)")
#: File names named without their folder (C{`scan.py`}), in backquotes.
_BARE = re.compile(r"`([\w-]+\.py)`")
#: Dotted names under pypid (C{pypid.logs.json_observer}).
_DOTTED = re.compile(r"(?<![\w/.])(pypid(?:\.[A-Za-z_]\w*)+)")
#: Markdown links to other documents.
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
#: Where a path names a file or folder (others, like LISTEN/NOTIFY, are words).
_SUFFIXES = (".py", ".md", ".conf", ".cfg", ".toml", ".sh", "/")


def blocks(text: str) -> Iterator[str]:
    """The document's paragraphs, list items and code blocks, one at a time."""
    lines = text.splitlines()
    current: list[str] = []
    fenced = False
    for line in lines:
        if line.startswith("```"):
            if fenced:
                current.append(line)
                yield "\n".join(current)
                current = []
                fenced = False
                continue
            if current:
                yield "\n".join(current)
            current, fenced = [line], True
            continue
        if not fenced and (not line.strip() or line.startswith("- ") or line.startswith("#")):
            if current:
                yield "\n".join(current)
            current = [line] if line.strip() else []
            continue
        current.append(line)
    if current:
        yield "\n".join(current)


def resolve(word: str) -> Optional[Path]:
    """
    Where a path-like word of the document points, or L{None} when it is no
    path: paths start at the repository's top (C{pypid/web/errors.py},
    C{tests/store/contract.py}) or, as in the diagram, below C{pypid/}
    (C{store/snapshot.py}).
    """
    word = word.rstrip(".,;:")
    if not word.endswith(_SUFFIXES):
        return None
    first = word.split("/", 1)[0]
    if (ROOT / first).exists():
        return ROOT / word
    return PYPID / word


def named_paths(text: str) -> dict[Path, str]:
    """Every path the document names, with the word that named it."""
    named: dict[Path, str] = {}
    for block in blocks(text):
        for word in _PATH.findall(block):
            path = resolve(word)
            if path is not None:
                named[path] = word
    return named


def missing_names(text: str) -> list[str]:
    """What the document names that the repository does not have, each with why."""
    problems: list[str] = []
    for block in blocks(text):
        folders: list[Path] = []
        for word in _PATH.findall(block):
            path = resolve(word)
            if path is None:
                continue
            if not path.exists():
                problems.append(f"{word}: no {path.relative_to(ROOT)}")
            elif word.rstrip(".,;:").endswith("/") and not path.is_dir():
                problems.append(f"{word}: {path.relative_to(ROOT)} is no folder")
            folders.append(path if path.is_dir() else path.parent)
        # A file named without its folder is in a folder the same paragraph
        # or list item names (or at the top of pypid/).
        for name in _BARE.findall(block):
            places = folders or [PYPID]
            if not any((folder / name).is_file() for folder in places):
                where = ", ".join(str(folder.relative_to(ROOT)) + "/" for folder in places)
                problems.append(f"{name}: not in {where} (in: {block.splitlines()[0].strip()!r})")
    for dotted in set(_DOTTED.findall(text)):
        if not _importable(dotted):
            problems.append(f"{dotted}: no such module or attribute")
    for target in set(_LINK.findall(text)):
        if "://" not in target and not (DOC.parent / target).exists():
            problems.append(f"link {target}: no docs/{target}")
    return problems


def _importable(dotted: str) -> bool:
    """Whether C{dotted} is a module of pypid, or an attribute of one."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            thing = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attribute in parts[i:]:
            if not hasattr(thing, attribute):
                return False
            thing = getattr(thing, attribute)
        return True
    return False


def test_every_named_path_exists():
    """A module, folder or document the architecture names is there (renames update the doc)."""
    assert missing_names(DOC.read_text(encoding="utf-8")) == []


def test_every_package_and_top_module_is_named():
    """Each folder of pypid/ and each module at its top is named, by its path from the top."""
    named = named_paths(DOC.read_text(encoding="utf-8"))
    packages = sorted(p.parent for p in PYPID.rglob("__init__.py"))
    modules = sorted(p for p in PYPID.glob("*.py") if p.name != "__init__.py")
    unnamed = [str(p.relative_to(ROOT)) + ("/" if p.is_dir() else "") for p in packages + modules
               if p not in named and p != PYPID]
    assert unnamed == []


def test_the_check_finds_what_is_not_there():
    """The path check is no rubber stamp: wrong folders, files and names are reported."""
    text = (
        "- `pypid/store/directory/`: `scan.py`, `nosuch.py`\n"
        "- `pypid/web/nosuch.py` and `pypid/index/model.py/`\n"
        "```text\n web/errors.py  store/nosuch/\n```\n"
        "`pypid.logs.json_observer`, `pypid.logs.nothing`, [x](nosuch.md), LISTEN/NOTIFY\n"
    )
    assert [problem.split(":")[0] for problem in missing_names(text)] == [
        "nosuch.py",                # not in the folder its list item names
        "pypid/web/nosuch.py",      # no such module
        "pypid/index/model.py/",    # a file named as a folder
        "store/nosuch/",            # below pypid/, as the diagram names them
        "pypid.logs.nothing",       # no such attribute
        "link nosuch.md",           # no such document
    ]


# The import rule ------------------------------------------------------------

#: The layers, top first: a module may import its own group and the groups of
#: lower layers, never a higher layer's nor another group of its own layer.
#: Groups are the folders of pypid/ and the modules at its top ("pypid" is
#: pypid/__init__.py, the version).
LAYERS: list[tuple[str, ...]] = [
    ("docs_cli",),
    ("cli", "worker"),
    ("pypiserver",),
    ("tap",),
    ("web",),
    ("feed",),
    ("auth", "upstream", "testing"),
    ("store",),
    ("logs",),
    ("index", "ops"),
    ("atomic", "counts", "lru", "threads", "pypid"),
]
RANK = {group: len(LAYERS) - i for i, layer in enumerate(LAYERS) for group in layer}

#: Imports that go up today, each with its reason. An entry that no longer
#: matches an import fails the test too: delete it.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {
    # IBody.stream writes into a twisted.web request: the directory store's
    # body hands its descriptor to the web's FileSender.
    ("pypid.store.directory.body", "pypid.web.files"): "IBody.stream",
    # The object store's body answers a download that fails before its
    # first byte with the web's error page.
    ("pypid.store.objectstore.store", "pypid.web.errors"): "IBody.stream",
    # Upstream files shared by replicas live with the object store, and use
    # the fallback's hash check and the client's Download record.
    ("pypid.store.objectstore.upstream", "pypid.upstream.fallback"): "shared upstream files",
    ("pypid.store.objectstore.upstream", "pypid.upstream.client"): "shared upstream files",
    # build() makes the fallback's web resources (UpstreamWeb) too.
    ("pypid.upstream.config", "pypid.web.upstreamfiles"): "upstream.config.build",
    # The fallback's in-memory IBody streams with the web's bytes_sender.
    ("pypid.upstream.fallback", "pypid.web.send"): "IBody.stream",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def as_module(dotted: str) -> Optional[str]:
    """The longest prefix of C{dotted} that is a module of pypid (or L{None})."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:i])
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return ".".join(parts[:i])
    return None


def group_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "pypid"


def imports(path: Path) -> Iterator[str]:
    """The pypid modules C{path} imports: at the top, in functions, under TYPE_CHECKING."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # from pypid import tap: the module pypid.tap; from pypid import
            # __version__: pypid itself.
            names = [f"{source}.{alias.name}" for alias in node.names] + [source]
        else:
            continue
        for name in names:
            if name == "pypid" or name.startswith("pypid."):
                module = as_module(name)
                if module is not None:
                    yield module


def import_edges() -> set[tuple[str, str]]:
    edges = set()
    for path in sorted(PYPID.rglob("*.py")):
        source = module_name(path)
        for target in imports(path):
            edges.add((source, target))
    return edges


def upward(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The imports of C{edges} that break the layers."""
    bad = set()
    for source, target in edges:
        mine, theirs = group_of(source), group_of(target)
        if mine != theirs and RANK[theirs] >= RANK[mine]:
            bad.add((source, target))
    return bad


def test_every_group_has_a_layer():
    """A new folder or top-level module of pypid/ must be given its place (here and in the doc)."""
    groups = {group_of(module_name(p)) for p in PYPID.rglob("*.py")}
    assert sorted(groups - set(RANK)) == []


def test_imports_go_down():
    """No module imports a higher layer (or a neighbour in its own), but the listed exceptions."""
    assert sorted(upward(import_edges()) - set(ALLOWED_UPWARD)) == []


def test_every_exception_is_still_needed():
    """An exception that no longer matches an import is deleted from the list."""
    assert sorted(set(ALLOWED_UPWARD) - import_edges()) == []


@pytest.mark.parametrize("source, target, breaks", [
    ("pypid.index.model", "pypid.store.interfaces", True),
    ("pypid.store.memory", "pypid.web.errors", True),
    ("pypid.store.memory", "pypid.feed.publish", True),
    ("pypid.auth.acl", "pypid.upstream.client", True),
    ("pypid.index.pages", "pypid.ops.metrics", True),
    ("pypid.tap", "pypid.cli", True),
    ("pypid.web.root", "pypid.store.interfaces", False),
    ("pypid.feed.publish", "pypid.auth.tokens", False),
    ("pypid.store.directory.store", "pypid.index.model", False),
    ("pypid.store.objectstore.store", "pypid.store.directory.landing", False),
    ("pypid.index.welcome", "pypid", False),
])
def test_the_rule(source, target, breaks):
    """The layer check itself: down is fine, up and sideways are not."""
    assert (upward({(source, target)}) != set()) is breaks


def test_imports_are_found_everywhere():
    """Imports in functions and C{from pypid import X} are seen, as modules or as pypid itself."""
    assert ("pypid.store.directory.body", "pypid.web.files") in import_edges()  # in a method
    assert ("pypid.cli", "pypid.tap") in import_edges()  # from pypid import tap, in a function
    assert ("pypid.index.welcome", "pypid") in import_edges()  # from pypid import __version__
