"""tests/needs.py: a missing outside program skips a test, except in CI where it fails it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.server import ROOT


def _run(tmp_path, ci: bool) -> subprocess.CompletedProcess:
    test = tmp_path / "test_missing_program.py"
    test.write_text(textwrap.dedent("""
        from tests.needs import needs
        pytestmark = needs(None, "frobnicator is not installed")
        def test_uses_frobnicator():
            pass
    """))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    if ci:
        env["PYPID_CI"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.needs", "--rootdir", str(ROOT),
         "--confcutdir", str(ROOT / "tests"), "-c", str(ROOT / "pyproject.toml"), str(test)],
        capture_output=True, text=True, cwd=str(tmp_path), env=env,
    )


def test_missing_program_skips_outside_ci(tmp_path):
    """Outside CI, a test whose program is missing is skipped with the reason."""
    result = _run(tmp_path, ci=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout


def test_missing_program_fails_in_ci(tmp_path):
    """In CI (PYPID_CI=1), the same test fails and says what is missing."""
    result = _run(tmp_path, ci=True)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "frobnicator is not installed" in result.stdout
