"""
Tests that need a real outside program (nginx, chromium, supervisor, git,
podman, PostgreSQL, SeaweedFS...) declare it with L{needs}: where the
program is missing they are skipped with the reason, except in CI
(C{PYPID_CI=1}, set by C{.ci/run}), where a missing program is a failure:
CI must never pass by skipping the real thing. This module is also the
pytest plugin that turns the mark into that failure (C{tests/conftest.py}
loads it).
"""

from __future__ import annotations

import os

import pytest

#: Whether this run is CI's (then nothing may be skipped for a missing program).
IN_CI = os.environ.get("PYPID_CI") == "1"


def needs(present: object, reason: str) -> pytest.MarkDecorator:
    """
    A mark for tests that need something C{present} says is there (a path,
    True): none when it is; a skip with C{reason} when it is not; in CI a
    failure with C{reason} (see C{tests/conftest.py}).
    """
    if present:
        return pytest.mark.needs_present
    if IN_CI:
        return pytest.mark.needs_missing(reason)
    return pytest.mark.skip(reason=reason)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_present: the outside program this test needs is there")
    config.addinivalue_line("markers", "needs_missing(reason): in CI, the program this test needs is missing")


@pytest.fixture(autouse=True)
def _needs_in_ci(request: pytest.FixtureRequest) -> None:
    """In CI a test whose outside program is missing fails, saying what is missing."""
    missing = request.node.get_closest_marker("needs_missing")
    if missing is not None:
        pytest.fail(f"CI (PYPID_CI=1) must run this test: {missing.args[0]}", pytrace=False)
