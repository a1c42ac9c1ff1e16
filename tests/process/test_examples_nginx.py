"""
examples/nginx-pypid.conf, as docs/operations.md gives it, in front of a real pypid:
a real nginx (Debian's) on loopback proxies https://127.0.0.1:N/pypi/ to
pypid, and real pip and twine go through it.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from pypid.testing import sdist_bytes, wheel_bytes, write_dist
from tests.server import ROOT, PypidServer
from tests.process.test_tls import make_certificate, tls_env
from tests.uploadhelp import htpasswd, twine
from tests.needs import needs

EXAMPLE = ROOT / "examples" / "nginx-pypid.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
#: Where test clients connect from: another loopback address than the
#: proxy's, so pypid can tell the client from the trusted proxy.
CLIENT = "127.0.0.2"

pytestmark = needs(NGINX, "nginx is not installed (apt-get install nginx; .ci/run does)")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def substitute(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} should appear once in the example"
    return text.replace(old, new)


class Nginx:
    """nginx -p DIR -c DIR/nginx.conf in the foreground, with the example site."""

    def __init__(self, directory: Path, upstream_port: int, cert: Path, key: Path) -> None:
        self.dir = directory
        self.http_port, self.https_port = free_port(), free_port()
        site = EXAMPLE.read_text()
        site = substitute(site, "server 127.0.0.1:3141;", f"server 127.0.0.1:{upstream_port};")
        site = substitute(site, "listen 80;", f"listen 127.0.0.1:{self.http_port};")
        site = substitute(site, "listen 443 ssl;", f"listen 127.0.0.1:{self.https_port} ssl;")
        site = substitute(site, "/etc/ssl/pypid/cert.pem", str(cert))
        site = substitute(site, "/etc/ssl/pypid/key.pem", str(key))
        (directory / "site.conf").write_text(site)
        user = "user root;\n" if os.geteuid() == 0 else ""
        (directory / "nginx.conf").write_text(
            f"{user}worker_processes 1;\ndaemon off;\npid {directory}/nginx.pid;\n"
            f"error_log {directory}/error.log info;\nevents {{ worker_connections 64; }}\n"
            "http {\n"
            f"  access_log {directory}/access.log;\n"
            + "".join(f"  {kind}_temp_path {directory}/{kind}_temp;\n"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
            + f"  include {directory}/site.conf;\n}}\n"
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> "Nginx":
        command = [NGINX, "-e", str(self.dir / "error.log"), "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")]
        check = subprocess.run(command + ["-t"], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if (self.dir / "nginx.pid").exists():
                try:
                    http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=2).request("HEAD", "/")
                    return self
                except OSError:
                    pass
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("nginx did not start:\n" + (self.dir / "error.log").read_text())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("nginx")
    packages = root / "packages"
    write_dist(str(packages), wheel_bytes("Demo_App", "1.0", requires=["demo-lib"], summary="The demo app"))
    write_dist(str(packages), sdist_bytes("Demo_App", "1.0", requires=["demo-lib"], summary="The demo app"))
    write_dist(str(packages), wheel_bytes("demo-lib", "2.0"))
    passwords = htpasswd(root / "htpasswd", {"alice": "alice-pw"})
    pypid = PypidServer(["-P", str(passwords), "--trusted-proxy", "127.0.0.1/32", str(packages)],
                        log_path=root / "pypid.log")
    pypid.start()
    tls = make_certificate(root)
    cert = tls.ca  # what clients trust
    nginx_dir = root / "nginx"
    nginx_dir.mkdir()
    nginx = Nginx(nginx_dir, pypid.port, tls.cert, tls.key)
    try:
        nginx.start()
    except BaseException:
        pypid.stop()
        raise
    yield pypid, nginx, cert, packages
    nginx.stop()
    pypid.stop()


def base(nginx: Nginx) -> str:
    return f"https://127.0.0.1:{nginx.https_port}/pypi/"


def fetch(nginx: Nginx, cert: Path, url: str, headers: dict | None = None, method: str = "GET"):
    """One request through nginx from the client address; no redirects followed."""
    parts = urlsplit(url)
    context = ssl.create_default_context(cafile=str(cert))
    connection = http.client.HTTPSConnection(parts.hostname, parts.port, context=context,
                                             source_address=(CLIENT, 0), timeout=30)
    connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers or {})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, response, body


def test_readme_gives_the_tested_config():
    """The nginx configuration in docs/operations.md is this tested file, verbatim."""
    readme = (ROOT / "docs" / "operations.md").read_text()
    assert EXAMPLE.read_text().strip() in readme


def test_pip_install_through_nginx(setup, tmp_path):
    pypid, nginx, cert, _ = setup
    target = tmp_path / "target"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--cert", str(cert), "--target", str(target),
         "--index-url", base(nginx) + "simple/", "demo-app"],
        env=tls_env(tmp_path), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in target.glob("*.dist-info")) == ["demo_app-1.0.dist-info", "demo_lib-2.0.dist-info"]


def test_twine_upload_through_nginx_then_install(setup, tmp_path):
    """A 24 MiB upload streams through nginx (no body limit, no buffering) and installs."""
    pypid, nginx, cert, packages = setup
    dist = tmp_path / "dist"
    dist.mkdir()
    name, data = wheel_bytes("Big_Upload", "1.0", padding=24 * 1024 * 1024)
    (dist / name).write_bytes(data)
    env = tls_env(tmp_path)
    result = subprocess.run(
        twine("upload", "--non-interactive", "--repository-url", base(nginx), "--cert", str(cert),
              "-u", "alice", "-p", "alice-pw", str(dist / name)),
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (packages / name).read_bytes() == data
    target = tmp_path / "target"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--cert", str(cert), "--target", str(target),
         "--index-url", base(nginx) + "simple/", "big-upload"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "file_upload ok user=alice client=127.0.0.1 project=big-upload" in pypid.log()


def test_html_links_resolve_under_the_prefix(setup):
    pypid, nginx, cert, _ = setup
    page_url = base(nginx) + "simple/demo-app/"
    status, _, body = fetch(nginx, cert, page_url)
    assert status == 200
    hrefs = re.findall(r'href="([^"#]+)', body.decode())
    assert hrefs
    for href in hrefs:
        absolute = urljoin(page_url, href)
        assert urlsplit(absolute).path.startswith("/pypi/packages/"), absolute
        assert fetch(nginx, cert, absolute, method="HEAD")[0] == 200
    status, _, body = fetch(nginx, cert, base(nginx) + "project/demo-app/")
    assert status == 200 and f"--index-url {base(nginx)}simple/ demo-app".encode() in body
    for href in re.findall(r'href="([^"#]+)', body.decode()):
        assert urlsplit(urljoin(base(nginx) + "project/demo-app/", href)).path.startswith("/pypi/"), href


def test_json_urls_carry_the_prefix(setup):
    pypid, nginx, cert, _ = setup
    status, _, body = fetch(nginx, cert, base(nginx) + "pypi/demo-app/json")
    doc = json.loads(body)
    urls = [f["url"] for f in doc["urls"]]
    assert urls and all(u.startswith(base(nginx) + "packages/") for u in urls)
    assert doc["info"]["package_url"] == base(nginx) + "simple/demo-app/"
    assert fetch(nginx, cert, urls[0], method="HEAD")[0] == 200
    status, _, body = fetch(nginx, cert, base(nginx) + "simple/demo-app/",
                            {"Accept": "application/vnd.pypi.simple.v1+json"})
    for f in json.loads(body)["files"]:
        assert urlsplit(urljoin(base(nginx) + "simple/demo-app/", f["url"])).path.startswith("/pypi/packages/")
    _, _, body = fetch(nginx, cert, base(nginx))
    assert f"{base(nginx)}simple/".encode() in body


@pytest.mark.parametrize("path, code, target", [
    ("simple/Demo_App/", 301, "/pypi/simple/demo-app/"),
    ("simple/Demo_App", 301, "/pypi/simple/demo-app/"),
    ("simple", 301, "/pypi/simple/"),
    ("Demo.App", 303, "/pypi/simple/demo-app/"),
    ("project/Demo_App", 301, "/pypi/project/demo-app/"),
])
def test_redirects_keep_the_prefix(setup, path, code, target):
    pypid, nginx, cert, _ = setup
    url = base(nginx) + path
    status, response, _ = fetch(nginx, cert, url)
    assert status == code
    assert urlsplit(urljoin(url, response.getheader("Location"))).path == target


def test_bare_prefix_and_plain_http_redirect(setup):
    pypid, nginx, cert, _ = setup
    status, response, _ = fetch(nginx, cert, f"https://127.0.0.1:{nginx.https_port}/pypi")
    assert status == 301 and response.getheader("Location") == "/pypi/"
    connection = http.client.HTTPConnection("127.0.0.1", nginx.http_port, timeout=10)
    connection.request("GET", "/pypi/simple/")
    response = connection.getresponse()
    assert response.status == 301 and response.getheader("Location").startswith("https://")


def test_forged_forwarding_headers_are_ignored(setup):
    """Through nginx, its own X-Forwarded-Host wins; straight to pypid, an untrusted peer's is ignored."""
    pypid, nginx, cert, _ = setup
    forged = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Prefix": "/evil", "X-Forwarded-For": "6.6.6.6"}
    _, _, body = fetch(nginx, cert, base(nginx) + "pypi/demo-app/json", forged)
    assert b"evil" not in body and base(nginx).encode() in body
    # Straight to pypid from 127.0.0.2, which is not a trusted proxy.
    connection = http.client.HTTPConnection("127.0.0.1", pypid.port, source_address=(CLIENT, 0), timeout=10)
    connection.request("GET", "/pypi/demo-app/json", headers={**forged, "X-Forwarded-Proto": "https"})
    body = connection.getresponse().read()
    assert b"evil" not in body and f"http://127.0.0.1:{pypid.port}/packages/".encode() in body
    connection.request("GET", "/simple/Demo_App", headers=forged)
    response = connection.getresponse()
    response.read()
    assert response.getheader("Location") == "demo-app/"


def test_access_log_shows_the_real_client(setup):
    """pypid logs the client nginx names (127.0.0.2), not nginx, and not a forged hop."""
    pypid, nginx, cert, _ = setup
    fetch(nginx, cert, base(nginx) + "simple/?marker=client-check", {"X-Forwarded-For": "6.6.6.6"})
    deadline = time.monotonic() + 5
    while "marker=client-check" not in pypid.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(l for l in pypid.log().splitlines() if "marker=client-check" in l)
    assert f'{CLIENT} "GET /simple/?marker=client-check' in line and "6.6.6.6" not in line


def test_pip_search_through_nginx(setup, tmp_path):
    """pip search with the prefixed /pypi URL reaches XML-RPC through the proxy."""
    pypid, nginx, cert, _ = setup
    result = subprocess.run(
        [sys.executable, "-m", "pip", "search", "--cert", str(cert), "-i", base(nginx) + "pypi", "demo"],
        env=tls_env(tmp_path), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Demo_App (1.0)" in result.stdout and "The demo app" in result.stdout
