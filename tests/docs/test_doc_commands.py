"""
Every shell block of README.md and docs/*.md is run by this test, or names
the tests that cover it; blocks that are repository files are those files.
How to mark a block: docs/development.md, "Commands in the documents are
tested".
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.docs import runner
from tests.docs.blocks import ROOT, SHELL_LANGUAGES, Block, blocks, documents

HOW = ("put one of these on the line before its fence: <!-- run --> (the suite runs it), "
       "<!-- tested-by: tests/test_x.py::test_name --> (named tests cover it), or "
       "<!-- file: PATH --> (it is that repository file); a block that is not a command "
       "gets a non-shell language (ini, toml, text, ...). See docs/development.md.")

ALL = [block for path in documents() for block in blocks(path)]


def _ids(selected: list[Block]) -> list[str]:
    return [block.where for block in selected]


def test_the_documents_have_blocks():
    """The collection sees the documents (a broken parser would pass everything)."""
    assert (ROOT / "README.md") in documents() and len(documents()) >= 8
    assert sum(1 for b in ALL if b.marker and b.marker.kind == "run") >= 10


def test_every_shell_block_is_marked():
    problems = []
    for block in ALL:
        if block.marker_error:
            problems.append(f"{block.where}: bad marker: {block.marker_error}")
        elif not block.language and block.marker is None:
            problems.append(f"{block.where}: a block without a language: give it one "
                            f"({', '.join(sorted(SHELL_LANGUAGES))} for commands, else ini, text, ...)")
        elif block.is_shell and block.marker is None:
            problems.append(f"{block.where}: a shell block that is neither run nor tested-by: {HOW}")
    assert not problems, "\n".join(problems)


def _test_exists(ref: str) -> str | None:
    """None when C{ref} (path[::Class]::function, or a file) exists, else why not."""
    path, *names = ref.split("::")
    target = ROOT / path
    if not target.is_file():
        return f"{path} does not exist"
    if not names:
        return None
    tree = ast.parse(target.read_text(), filename=str(target))
    scope = tree.body
    for name in names:
        found = [node for node in scope
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name]
        if not found:
            return f"{path} has no {'::'.join(names)}"
        scope = found[0].body
    if not names[-1].startswith("test"):
        return f"{ref} is not a test"
    return None


TESTED_BY = [b for b in ALL if b.marker and b.marker.kind == "tested-by"]


@pytest.mark.parametrize("block", TESTED_BY, ids=_ids(TESTED_BY))
def test_tested_by_names_existing_tests(block: Block):
    missing = [why for why in map(_test_exists, block.marker.refs) if why]
    assert not missing, f"{block.where}: tested-by: " + "; ".join(missing)


FILES = [b for b in ALL if b.marker and b.marker.kind == "file"]


@pytest.mark.parametrize("block", FILES, ids=_ids(FILES))
def test_file_blocks_are_the_files(block: Block):
    path = ROOT / block.marker.refs[0]
    assert path.is_file(), f"{block.where}: {path} does not exist"
    assert block.text == path.read_text(), (
        f"{block.where} is not {block.marker.refs[0]} verbatim: copy the file into the block"
    )


RUN = [b for b in ALL if b.marker and b.marker.kind == "run"]


@pytest.mark.parametrize("block", RUN, ids=_ids(RUN))
def test_run_block(block: Block, tmp_path: Path):
    runner.run(block, tmp_path)


def test_tested_by_lookup_refuses_what_is_not_there():
    assert _test_exists("tests/docs/test_blocks.py::test_bad_markers") is None
    assert _test_exists(".ci/debian") is None
    assert "does not exist" in _test_exists("tests/test_nothing_here.py::test_x")
    assert "has no" in _test_exists("tests/docs/test_blocks.py::test_nothing_here")
    assert "has no" in _test_exists("tests/store/directory/test_watch.py::WatchServiceTests::test_nothing_here")
    assert "is not a test" in _test_exists("tests/docs/blocks.py::documents")
