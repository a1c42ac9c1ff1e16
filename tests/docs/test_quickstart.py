"""The README's quick start: ./scripts/serve serves ./packages."""

from __future__ import annotations

from tests.docs import runner
from tests.docs.blocks import ROOT, Block, parse_marker


def test_serve_script_serves_packages(tmp_path):
    """
    The real scripts/serve (its virtualenv taken as set up: scripts/test sets
    one up with the same function) serves ./packages on the port it
    names, with the welcome page and a dropped wheel listed and installable.
    """
    marker = parse_marker(
        "run\n"
        "before: mkdist packages quick-start 1.0\n"
        "after: curl -sf http://127.0.0.1:3141/ | grep -q 'pypid package index'\n"
        "after: curl -sf http://127.0.0.1:3141/simple/ | grep -q quick-start\n"
        "after: pip install -q --index-url http://127.0.0.1:3141/simple/ quick-start\n"
        "after: test -d \"$DOC_PIP_ENV\"/lib/*/site-packages/quick_start-1.0.dist-info\n"
    )
    block = Block(ROOT / "README.md", 0, "sh", "./scripts/serve\n", marker)
    runner.run(block, tmp_path)
