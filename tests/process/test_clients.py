"""Real clients against a real pypid: pip, uv and the pypi-simple library."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pypid.testing import sdist_bytes, wheel_bytes, write_dist
from tests.server import PypidServer, client_env, tool

OLD = 1_700_000_000  # 2023-11-14
NEW = 1_760_000_000  # 2025-10-09


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("clients")
    packages = root / "packages"
    write_dist(str(packages), wheel_bytes("Demo_App", "1.0", requires=["demo-lib>=1"]), mtime=OLD)
    write_dist(str(packages), sdist_bytes("Demo_App", "1.0", requires=["demo-lib>=1"]), mtime=OLD)
    write_dist(str(packages / "lib"), wheel_bytes("demo.lib", "1.0"), mtime=OLD)
    write_dist(str(packages / "lib"), wheel_bytes("demo.lib", "2.0"), mtime=NEW)
    write_dist(str(packages / "lib"), sdist_bytes("demo.lib", "2.0"), mtime=NEW)
    write_dist(str(packages), wheel_bytes("future-only", "1.0", requires_python=">=4"), mtime=OLD)
    write_dist(str(packages), wheel_bytes("future-only", "0.9", requires_python=">=3.8"), mtime=OLD)
    server = PypidServer([str(packages)], log_path=root / "twistd.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def env(tmp_path):
    return client_env(tmp_path)


def run(args, env, cwd=None):
    result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def pip(*args):
    return [sys.executable, "-m", "pip", *args]


def test_pip_download_wheel_and_sdist(server, env, tmp_path):
    """pip downloads the wheel, and the sdist when binaries are refused, byte-identical."""
    out = tmp_path / "wheel"
    run(pip("download", "--no-deps", "-d", str(out), "--index-url", server.url + "simple/", "demo-app"), env)
    assert os.listdir(out) == ["demo_app-1.0-py3-none-any.whl"]
    out = tmp_path / "sdist"
    run(pip("download", "--no-deps", "--no-binary", ":all:", "-d", str(out),
            "--index-url", server.url + "simple/", "Demo_App==1.0"), env)
    assert os.listdir(out) == ["demo_app-1.0.tar.gz"]


def test_pip_install_resolves_dependencies(server, env, tmp_path):
    """pip install resolves a dependency from the same index, using the root URL too."""
    target = tmp_path / "target"
    output = run(pip("install", "--target", str(target), "--index-url", server.url, "demo-app"), env)
    installed = sorted(p for p in os.listdir(target) if p.endswith(".dist-info"))
    assert installed == ["demo_app-1.0.dist-info", "demo_lib-2.0.dist-info"], output


def test_pip_install_sdist(server, env, tmp_path):
    """pip builds and installs an sdist from the index (in-tree backend, offline)."""
    target = tmp_path / "target"
    run(pip("install", "--no-binary", "demo-app", "--no-deps", "--target", str(target),
            "--index-url", server.url + "simple/", "demo-app"), env)
    assert os.path.exists(target / "demo_app" / "__init__.py")


def test_pip_respects_requires_python(server, env, tmp_path):
    """data-requires-python keeps pip off a release this Python cannot run."""
    out = tmp_path / "dl"
    run(pip("download", "--no-deps", "-d", str(out), "--index-url", server.url + "simple/", "future-only"), env)
    assert os.listdir(out) == ["future_only-0.9-py3-none-any.whl"]


def test_uv_pip_install(server, env, tmp_path):
    target = tmp_path / "target"
    run([tool("uv"), "pip", "install", "--python", sys.executable, "--target", str(target),
         "--index-url", server.url + "simple/", "demo-app"], env)
    installed = sorted(p for p in os.listdir(target) if p.endswith(".dist-info"))
    assert installed == ["demo_app-1.0.dist-info", "demo_lib-2.0.dist-info"]


def test_uv_pip_compile_and_exclude_newer(server, env, tmp_path):
    """uv resolves through pypid, and --exclude-newer works from upload-time."""
    requirements = tmp_path / "requirements.in"
    requirements.write_text("demo-app\n")
    common = [tool("uv"), "pip", "compile", "--python", sys.executable, "--no-header",
              "--index-url", server.url + "simple/", str(requirements)]
    output = run(common, env)
    assert "demo-lib==2.0" in output and "demo-app==1.0" in output
    output = run(common + ["--exclude-newer", "2024-06-01T00:00:00Z"], env)
    assert "demo-lib==1.0" in output, output


def test_pypi_simple_html_and_json(server):
    """The pypi-simple client reads both serialisations the same way."""
    from pypi_simple import ACCEPT_HTML_ONLY, ACCEPT_JSON_ONLY, PyPISimple

    pages = {}
    for name, accept in (("html", ACCEPT_HTML_ONLY), ("json", ACCEPT_JSON_ONLY)):
        with PyPISimple(server.url + "simple/", accept=accept) as client:
            index = client.get_index_page()
            assert sorted(index.projects) == sorted(["Demo_App", "demo.lib", "future-only"])
            pages[name] = client.get_project_page("demo-lib")
            assert pages[name].repository_version == "1.4"
    for page in pages.values():
        files = {p.filename: p for p in page.packages}
        wheel = files["demo_lib-2.0-py3-none-any.whl"]
        assert wheel.version == "2.0" and wheel.package_type == "wheel"
        assert len(wheel.digests["sha256"]) == 64
        assert wheel.has_metadata
        assert files["demo_lib-2.0.tar.gz"].has_metadata in (None, False)
    assert pages["json"].versions == ["1.0", "2.0"]
    json_files = {p.filename: p for p in pages["json"].packages}
    assert json_files["demo_lib-2.0-py3-none-any.whl"].size > 0
    assert json_files["demo_lib-2.0-py3-none-any.whl"].upload_time.year == 2025
    html_urls = sorted(p.url for p in pages["html"].packages)
    json_urls = sorted(p.url for p in pages["json"].packages)
    assert html_urls == json_urls
