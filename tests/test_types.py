"""
Types at the seams: mypy, with the zope.interface plugin (mypy-zope), over
pypid, configured in setup.cfg's [mypy] sections: strict on pypid.index,
pypid.store and pypid.feed, the rest checked without demanding
annotations everywhere. Any error fails the suite.

The check runs in the newest-dependencies run only. Type-checking reads the
installed libraries' annotations, and Debian 12's Twisted 22.4 (with
watchdog 2.2.1) annotates the same APIs differently from the newest ones
(FilePath is not generic, a protocol's factory is a bare Factory,
DeferredLock.run and Failure.raiseException are typed otherwise, treq 22.2
has no py.typed): one source cannot be clean under both, not without
version tests in the code. The Debian 12 run skips it, saying why; a missing
mypy fails in CI (PYPID_CI=1) like any missing tool.
"""

from __future__ import annotations

import configparser
import importlib.util
import subprocess
import sys
from importlib.metadata import version

import pytest
from packaging.version import Version

from tests.needs import needs
from tests.server import ROOT

#: The packages held to mypy's strict flags (and their subpackages).
STRICT = ("pypid.index", "pypid.store", "pypid.feed")


def _bookworm_twisted() -> Version:
    """The Twisted of the Debian 12 run (requirements/bookworm.txt)."""
    for line in (ROOT / "requirements" / "bookworm.txt").read_text().splitlines():
        if line.startswith("twisted=="):
            return Version(line.split("==", 1)[1])
    raise AssertionError("requirements/bookworm.txt pins no twisted")


_have_mypy = importlib.util.find_spec("mypy") is not None and importlib.util.find_spec("mypy_zope") is not None


def _config() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config


def test_strict_packages_are_configured_strict():
    """setup.cfg holds index, store and feed (and all below them) to every flag --strict turns on."""
    config = _config()
    assert config["mypy"]["plugins"].strip() == "mypy_zope:plugin"
    sections = [name for name in config.sections() if name.startswith("mypy-")]
    strict = [name for name in sections if config[name].getboolean("disallow_untyped_defs", False)]
    assert len(strict) == 1, strict
    covered = {module.strip() for module in strict[0][len("mypy-"):].split(",")}
    for package in STRICT:
        assert {package, package + ".*"} <= covered
    flags = config[strict[0]]
    for flag in ("disallow_any_generics", "disallow_subclassing_any", "disallow_untyped_calls",
                 "disallow_untyped_defs", "disallow_incomplete_defs", "check_untyped_defs",
                 "disallow_untyped_decorators", "warn_unused_ignores", "warn_return_any",
                 "strict_equality", "extra_checks"):
        assert flags.getboolean(flag), flag
    assert not flags.getboolean("implicit_reexport")
    # What --strict turns on globally, and no section loosens the strict packages again.
    assert config["mypy"].getboolean("warn_redundant_casts")
    for name in sections:
        modules = {module.strip() for module in name[len("mypy-"):].split(",")}
        if name != strict[0] and any(m.startswith(STRICT) for m in modules):
            raise AssertionError(f"[{name}] reconfigures a strict package")


@needs(_have_mypy, "mypy and mypy-zope are not installed (requirements/test.txt)")
def test_mypy_is_clean(tmp_path):
    """mypy over pypid and the twistd plugin, with setup.cfg's configuration: no errors."""
    if Version(version("twisted")) <= _bookworm_twisted():
        pytest.skip(f"type-checked in the newest-dependencies run only: this run has Twisted "
                    f"{version('twisted')} (Debian 12's), whose annotations differ")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "setup.cfg"),
         "--cache-dir", str(tmp_path / "mypy-cache"), "--no-error-summary"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    report = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not report, report
