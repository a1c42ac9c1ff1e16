"""setup.cfg lists every package of the tree (it names them by hand, for twisted/plugins' sake)."""

from __future__ import annotations

import configparser

from tests.server import ROOT


def test_setup_cfg_lists_every_package():
    """A new folder under pypid/ that setup.cfg forgets would be missing from the wheel and the .deb."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = {line.strip() for line in config["options"]["packages"].splitlines() if line.strip()}
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "pypid").rglob("__init__.py")}
    assert listed == found | {"twisted.plugins"}
    assert not (ROOT / "twisted" / "plugins" / "__init__.py").exists()
