"""
The welcome, project and search pages in a real browser: headless Chromium
(Debian's) renders them against a real pypid; the DOM it built is checked
for the expected text and for assets from elsewhere, and screenshots are
saved (to $PYPID_SCREENSHOTS as well, when set).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from pypid.testing import sdist_bytes, wheel_bytes, write_dist
from tests.server import PypidServer
from tests.needs import needs

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None)
pytestmark = needs(CHROMIUM, "chromium is not installed (apt-get install chromium; .ci/run does)")

OLD = 1_700_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("chromium")
    packages = root / "packages"
    write_dist(str(packages), wheel_bytes("Demo_App", "1.0", requires_python=">=3.8", summary="The demo application"), mtime=OLD)
    write_dist(str(packages), wheel_bytes("Demo_App", "1.1", requires_python=">=3.9", summary="The demo application"), mtime=OLD + 86400)
    write_dist(str(packages), sdist_bytes("Demo_App", "1.1", requires_python=">=3.9", summary="The demo application"), mtime=OLD + 86400)
    write_dist(str(packages), wheel_bytes("demo-lib", "2.0", summary="Helpers for the demo"), mtime=OLD)
    write_dist(str(packages), wheel_bytes("unrelated", "0.1", summary="Something else"), mtime=OLD)
    server = PypidServer([str(packages)], log_path=root / "twistd.log")
    server.start()
    yield server
    server.stop()


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    profile.mkdir()
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args,
    ]
    env = dict(os.environ, HOME=str(tmp_path))
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


class Assets(HTMLParser):
    """Every URL a page would load or link to."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data") and value:
                self.urls.append(value)


def text_of(dom: str) -> str:
    body = re.sub(r"(?s)<(style|script)[^>]*>.*?</\1>", " ", dom)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)).replace("&gt;", ">").replace("&lt;", "<").replace("&amp;", "&")


PAGES = [
    ("welcome", "", ["pypid package index", "3 projects", "Search", "Browse all projects",
                     "pip install --index-url {url}simple/ PROJECT"]),
    ("project", "project/demo-app/", ["Demo_App 1.1", "The demo application", "Requires Python >=3.9",
                                      "pip install --index-url {url}simple/ demo-app",
                                      "demo_app-1.1.tar.gz", "demo_app-1.0-py3-none-any.whl",
                                      "2023-11-15", "KiB"]),
    ("search", "search?q=demo", ["2 projects match demo", "Demo_App", "demo-lib", "Helpers for the demo"]),
]


@pytest.mark.parametrize("name, path, expected", PAGES, ids=[p[0] for p in PAGES])
def test_page_in_chromium(server, tmp_path, name, path, expected):
    url = server.url + path
    dom = chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0 and "<html" in dom.stdout, dom.stderr[-2000:]
    text = text_of(dom.stdout)
    for phrase in expected:
        assert phrase.format(url=server.url) in text, (phrase, text)
    if name == "search":
        assert "unrelated" not in text
    parser = Assets()
    parser.feed(dom.stdout)
    origin = urlsplit(server.url)[:2]
    for link in parser.urls:
        target = urlsplit(urljoin(url, link))
        assert target.scheme in ("http", "https") and target[:2] == origin, f"{name}: external {link}"
    shot = tmp_path / f"{name}.png"
    result = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,900", "--hide-scrollbars", url)
    assert shot.exists() and shot.stat().st_size > 10_000, result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("PYPID_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
