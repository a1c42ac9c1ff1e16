"""
The container image (Containerfile) and the compose files (examples/compose/),
built and run for real with podman: the base made with debootstrap from
Debian's packages, no registry (tests/process/podman.py). Real pip, uv and
twine go to containers on 127.0.0.1; a host directory is the packages volume.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pypid import __version__
from pypid.testing import wheel_bytes, write_dist
from tests.process.podman import (
    LABEL, SESSION, UID, Container, Podman, base_image, free_port, require,
)
from tests.server import ROOT, client_env, tool
from tests.process.test_tls import make_certificate, tls_env
from tests.uploadhelp import basic, htpasswd, twine, upload

COMPOSE = ROOT / "examples" / "compose"
NGINX_SITE = ROOT / "examples" / "nginx-pypid.conf"
DOCS = ROOT / "docs" / "container.md"


def docs_block(heading: str, language: str = "sh", index: int = 0) -> list[str]:
    """The lines of the INDEX-th code block after HEADING in docs/container.md."""
    section = DOCS.read_text().split(f"\n{heading}\n", 1)[1]
    block = section.split(f"```{language}\n")[index + 1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def replace_args(args: list[str], old: list[str], new: list[str]) -> list[str]:
    """C{args} with the one occurrence of the sequence C{old} replaced by C{new}."""
    found = [i for i in range(len(args)) if args[i:i + len(old)] == old]
    assert len(found) == 1, f"{old} should appear once in {args}"
    i = found[0]
    return args[:i] + new + args[i + len(old):]


# --- fixtures ---------------------------------------------------------------


@pytest.fixture(scope="session")
def podman(tmp_path_factory):
    if os.environ.get("PYPID_DEPS") == "bookworm":
        pytest.skip("the image runs Debian's own dependencies, not the test environment's: "
                    "its tests run once, in the newest-dependencies pass")
    require()
    podman = Podman(tmp_path_factory.mktemp("podman"))
    yield podman
    podman.sweep()


@pytest.fixture(scope="session")
def base(podman):
    return base_image(podman)


@pytest.fixture(scope="session")
def image(podman, base):
    """
    The image of this tree's Containerfile, on the debootstrap base, built
    with the quick start's command plus the flags this machine needs.
    """
    tag = f"localhost/pypid-test:{SESSION}"
    args = shlex.split(docs_block("## Quick start")[0])
    assert args[:2] == ["podman", "build"] and args[-1] == ".", args
    args = replace_args(args[1:-1], ["-t", "pypid"], ["-t", tag])
    started = time.monotonic()
    podman.run(*args, "--build-arg", f"BASE={base}", "--isolation=chroot", "--network=host",
               "--layers=false", "--pull=never", "--label", LABEL, str(ROOT), timeout=1200)
    print(f"\nbuilt {tag} in {time.monotonic() - started:.0f} s")
    yield tag
    podman.run("rmi", "-f", tag, check=False)


@pytest.fixture
def containers(podman, image):
    """A factory of started containers of the image, all removed at the end."""
    made: list[Container] = []

    def start(env=None, volumes=(), args=(), options=(), health="/health", wait=True) -> Container:
        container = Container(podman, image, env=env, volumes=volumes, args=args, options=options)
        made.append(container)
        return container.start(health) if wait else container

    yield start
    for container in made:
        container.remove()


def owned_dir(path: Path) -> Path:
    """A host directory the image's user may write, as a volume must be."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, UID, UID)
    return path


def run(args, env=None, check=True, input=None, timeout=300):
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, input=input)
    if check:
        assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def pip(*args):
    return [sys.executable, "-m", "pip", *args]


def dist_infos(target: Path) -> list[str]:
    return sorted(p for p in os.listdir(target) if p.endswith(".dist-info"))


def json_page(container: Container, project: str, headers=None) -> dict:
    status, body = container.get(f"/simple/{project}/",
                                 {"Accept": "application/vnd.pypi.simple.v1+json", **(headers or {})})
    assert status == 200, (status, body)
    return json.loads(body)


# --- the image ----------------------------------------------------------------


def test_image_configuration(podman, image):
    """Non-root uid 9898, port 8080, the packages volume, the health check, the entrypoint."""
    config = podman.inspect(image, "image")
    container = config["Config"]
    assert container["User"] == "9898:9898"
    assert list(container["ExposedPorts"]) == ["8080/tcp"]
    assert list(container["Volumes"]) == ["/data/packages"]
    assert container["WorkingDir"] == "/data"
    assert container["Entrypoint"] == ["pypid-entrypoint"]
    assert config["Healthcheck"]["Test"] == ["CMD", "pypid-healthcheck"]
    assert "PYPID_PORT=8080" in container["Env"] and "PYPID_PACKAGES=/data/packages" in container["Env"]
    assert container["StopSignal"] == "SIGTERM"
    size = config["Size"]
    print(f"\nimage size: {size / 1e6:.0f} MB")
    # Debian's python3-twisted and its dependencies make most of it; a stray
    # build stage or apt cache would add well over 100 MB.
    assert size < 250e6, f"the image is {size / 1e6:.0f} MB"


def test_image_holds_no_build_tools_or_caches(podman, image):
    """pypid from the .deb with Debian's dependencies; no compiler, pip, apt lists or .deb files."""
    script = r"""
        set -e
        echo "user=$(id -u):$(id -g) home=$(getent passwd pypid | cut -d: -f6)"
        echo "version=$(pypid version)"
        dpkg-query -W -f='${Status}\n' pypid python3-twisted python3-treq
        for tool in gcc cc make dpkg-buildpackage dh pip pip3; do
            if command -v "$tool" >/dev/null; then echo "found=$tool"; fi
        done
        echo "lists=$(find /var/lib/apt/lists -type f | wc -l)"
        echo "debs=$(find / -xdev -name '*.deb' | wc -l)"
        echo "pipcache=$(find / -xdev -path '*/.cache/pip' | wc -l)"
        echo "source=$(test -e /build && echo yes || echo no)"
        twistd3 --help | grep -c '^ *pypid '
    """
    out = podman.run("run", "--rm", "--label", LABEL, "--entrypoint", "bash", image, "-c", script).stdout
    assert f"user={UID}:{UID} home=/data" in out
    assert f"version={__version__}" in out
    assert out.count("install ok installed") == 3
    assert "found=" not in out, out
    assert "lists=0" in out and "debs=0" in out and "pipcache=0" in out and "source=no" in out


# --- serving a host directory -------------------------------------------------


def test_quick_start(podman, image, tmp_path):
    """
    The quick start's commands, run as the docs give them (the image, the
    container's name and the host port replaced; -it without a terminal is
    -i): pip and uv install from the host directory, twine uploads into it,
    as uid 9898, with the user `pypid passwd` made.
    """
    build, directories, passwd, serve = docs_block("## Quick start")
    pip_line, twine_line = docs_block("## Quick start", index=1)
    subprocess.run(["bash", "-ec", directories], cwd=tmp_path, check=True)
    packages, auth = tmp_path / "packages", tmp_path / "auth"
    assert (packages.stat().st_uid, auth.stat().st_gid) == (UID, UID)

    args = replace_args(shlex.split(passwd), ["-it"], ["-i", "--label", LABEL])
    args = replace_args(args, ["pypid", "pypid"], [image, "pypid"])
    result = podman.run(*args[1:], input="alice-pw\nalice-pw\n", cwd=tmp_path)
    assert "added user alice in /data/auth/.htpasswd" in result.stdout

    name, port = f"pypid-test-{SESSION}-{os.urandom(3).hex()}", free_port()
    args = replace_args(shlex.split(serve), ["--name", "pypid"], ["--name", name, "--label", LABEL])
    args = replace_args(args, ["-p", "8080:8080"], ["-p", f"127.0.0.1:{port}:8080"])
    assert args[-1] == "pypid"
    container = Container(podman, image)
    container.name, container.port = name, port
    try:
        podman.run(*args[1:-1], image, cwd=tmp_path)
        write_dist(str(packages), wheel_bytes("Demo_App", "1.0", requires=["demo-lib>=1"]))
        write_dist(str(packages / "lib"), wheel_bytes("demo.lib", "2.0"))
        container.wait_healthy()
        env = client_env(tmp_path)
        index = f"http://127.0.0.1:{port}/"
        pip_args = shlex.split(pip_line.replace("http://localhost:8080/", index))
        assert pip_args[:2] == ["pip", "install"]
        target = tmp_path / "pip"
        run(pip("install", "--target", str(target), *pip_args[2:]), env)
        assert dist_infos(target) == ["demo_app-1.0.dist-info", "demo_lib-2.0.dist-info"]
        target = tmp_path / "uv"
        run([tool("uv"), "pip", "install", "--python", sys.executable, "--target", str(target),
             *pip_args[2:]], env)
        assert dist_infos(target) == ["demo_app-1.0.dist-info", "demo_lib-2.0.dist-info"]

        dist = tmp_path / "dist"
        dist.mkdir()
        upload_name, data = wheel_bytes("Uploaded_Thing", "1.0")
        (dist / upload_name).write_bytes(data)
        twine_args = shlex.split(twine_line.replace("http://localhost:8080/", index))
        assert twine_args[:2] == ["twine", "upload"] and twine_args[-1] == "dist/*"
        twine_args = [tool("twine"), "upload", "--non-interactive", *twine_args[2:-1], str(dist / upload_name)]
        refused = run(twine_args + ["-p", "wrong"], env, check=False)
        assert refused.returncode != 0 and not (packages / upload_name).exists()
        run(twine_args + ["-p", "alice-pw"], env)
        landed = packages / upload_name
        assert landed.read_bytes() == data
        assert (landed.stat().st_uid, landed.stat().st_gid) == (UID, UID)

        check = podman.run("healthcheck", "run", name, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        podman.run("stop", name)
        assert podman.inspect(name)["State"]["ExitCode"] == 0
    finally:
        container.remove()


def test_a_file_copied_into_the_host_directory_is_listed_within_a_second(containers, tmp_path):
    packages = owned_dir(tmp_path / "packages")
    write_dist(str(packages), wheel_bytes("already-there", "1.0"))
    container = containers(volumes=(f"{packages}:/data/packages",))
    source = tmp_path / "elsewhere"
    name = write_dist(str(source), wheel_bytes("Dropped_In", "3.0"))
    assert container.get("/simple/dropped-in/")[0] == 404
    started = time.monotonic()
    shutil.copy(name, packages)
    while time.monotonic() - started < 5:
        if container.get("/simple/dropped-in/")[0] == 200:
            break
        time.sleep(0.02)
    elapsed = time.monotonic() - started
    print(f"\nlisted after {elapsed:.2f} s")
    assert elapsed < 1.0, f"listed after {elapsed:.2f} s"
    files = [f["filename"] for f in json_page(container, "dropped-in")["files"]]
    assert files == ["dropped_in-3.0-py3-none-any.whl"]


def test_sigterm_stops_it_within_five_seconds(podman, containers, tmp_path):
    """podman stop (SIGTERM, the image's STOPSIGNAL) with an upload in flight: a clean exit, well before 5 s."""
    packages = owned_dir(tmp_path / "packages")
    container = containers(env={"PYPID_PASSWORDS": ".", "PYPID_AUTHENTICATE": "."},
                           volumes=(f"{packages}:/data/packages",))
    # An upload that has sent its headers and a little of its body, no more.
    sock = socket.create_connection(("127.0.0.1", container.port))
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                 b"Content-Length: 100000000\r\n\r\n--b\r\n")
    time.sleep(0.3)
    started = time.monotonic()
    podman.run("stop", "-t", "10", container.name)
    elapsed = time.monotonic() - started
    sock.close()
    state = podman.inspect(container.name)["State"]
    assert elapsed < 5, f"stopped after {elapsed:.1f} s"
    assert state["ExitCode"] == 0, (state, container.logs())
    assert "Server Shut Down" in container.logs()
    print(f"\nstopped in {elapsed:.2f} s")
    assert [p.name for p in packages.iterdir() if not p.name.startswith(".pypid")] == []


def test_health_check_turns_healthy(podman, containers):
    container = containers(env={"PYPID_HEALTH_ENDPOINT": "/healthz"}, health="/healthz")
    assert podman.inspect(container.name)["State"]["Health"]["Status"] == "starting"
    check = podman.run("healthcheck", "run", container.name, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    health = podman.inspect(container.name)["State"]["Health"]
    assert health["Status"] == "healthy"
    assert health["Log"][-1]["Output"].strip() == f"healthy: http://127.0.0.1:{container.port}/healthz"


def test_health_check_can_fail(podman, containers):
    """Pointed elsewhere (PYPID_HEALTHCHECK_URL), the check says why and fails."""
    closed = free_port()
    container = containers(env={"PYPID_HEALTHCHECK_URL": f"http://127.0.0.1:{closed}/health"})
    check = podman.run("healthcheck", "run", container.name, check=False)
    assert check.returncode != 0
    output = podman.inspect(container.name)["State"]["Health"]["Log"][-1]["Output"]
    assert output.startswith(f"unhealthy: http://127.0.0.1:{closed}/health:"), output


def test_health_check_follows_tls_and_ipv6_endpoints(podman, containers, tmp_path):
    """PYPID_PORT as an ssl: or a tcp6: endpoint: the check finds the server there and turns healthy."""
    tls_dir = owned_dir(tmp_path / "tls")
    tls = make_certificate(tls_dir)
    os.chown(tls.key, UID, UID)
    ports = free_port(), free_port()
    tls_container = containers(env={"PYPID_PORT": f"ssl:{ports[0]}:privateKey=/data/tls/key.pem"
                                                  ":certKey=/data/tls/cert.pem:interface=127.0.0.1"},
                               volumes=(f"{tls_dir}:/data/tls:ro",), wait=False)
    ipv6_container = containers(env={"PYPID_PORT": f"tcp6:{ports[1]}:interface=\\:\\:1"}, wait=False)
    for container, url in ((tls_container, f"https://127.0.0.1:{ports[0]}/health"),
                           (ipv6_container, f"http://[::1]:{ports[1]}/health")):
        container.start(wait=False)
        deadline = time.monotonic() + 60
        while podman.run("healthcheck", "run", container.name, check=False).returncode != 0:
            assert time.monotonic() < deadline and container.running(), container.logs()
            time.sleep(0.2)
        assert podman.inspect(container.name)["State"]["Health"]["Log"][-1]["Output"].strip() == f"healthy: {url}"
    import ssl
    import urllib.request

    context = ssl.create_default_context(cafile=str(tls.ca))
    with urllib.request.urlopen(f"https://127.0.0.1:{ports[0]}/health", context=context, timeout=10) as response:
        assert json.load(response)["status"] == "ok"


def test_health_check_endpoint_urls():
    """The URL the check asks, for every endpoint form it knows, and a clear refusal of the others."""
    import importlib.util
    from importlib.machinery import SourceFileLoader

    loader = SourceFileLoader("pypid_healthcheck", str(ROOT / "container" / "pypid-healthcheck"))
    check = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(check)
    assert check.endpoint_url("8080", "/health") == "http://127.0.0.1:8080/health"
    assert check.endpoint_url("tcp:8080", "/h") == "http://127.0.0.1:8080/h"
    assert check.endpoint_url("tcp:port=8080:interface=0.0.0.0", "/h") == "http://127.0.0.1:8080/h"
    assert check.endpoint_url("tcp:3141:interface=10.1.2.3", "/h") == "http://10.1.2.3:3141/h"
    assert check.endpoint_url("tcp6:8080", "/h") == "http://[::1]:8080/h"
    assert check.endpoint_url("tcp6:8080:interface=\\:\\:", "/h") == "http://[::1]:8080/h"
    assert check.endpoint_url("ssl:8443:privateKey=k.pem:certKey=c.pem", "/h") == "https://127.0.0.1:8443/h"
    for bad in ("unix:/run/pypid.sock", "systemd:domain=INET:index=0", "tcp:interface=::1"):
        with pytest.raises(ValueError):
            check.endpoint_url(bad, "/h")

# --- options from the environment and the command line --------------------------


def test_environment_variables_auth_overwrite_acl_logs_and_options(podman, image, containers, tmp_path):
    """PYPID_PASSWORDS, _AUTHENTICATE, _OVERWRITE, _ACL, _LOG_FORMAT and _OPTIONS, each seen working."""
    packages = owned_dir(tmp_path / "packages")
    write_dist(str(packages), wheel_bytes("private-thing", "1.0"))
    auth = owned_dir(tmp_path / "auth")
    htpasswd(auth / ".htpasswd", {"alice": "alice-pw", "bob": "bob-pw"})
    (auth / "acl").write_text("alice-* = alice\n* = bob\n")
    container = containers(
        env={
            "PYPID_PASSWORDS": "/data/auth/.htpasswd",
            "PYPID_AUTHENTICATE": "update,download,list",
            "PYPID_OVERWRITE": "true",
            "PYPID_ACL": "/data/auth/acl",
            "PYPID_LOG_FORMAT": "json",
            "PYPID_OPTIONS": "--cache-control 3600 --max-upload-size 1M",
        },
        volumes=(f"{packages}:/data/packages", f"{auth}:/data/auth:ro"),
    )
    alice, bob = basic("alice", "alice-pw"), basic("bob", "bob-pw")
    # -a update,download,list: reading needs a user too.
    assert container.get("/simple/")[0] == 401
    assert container.get("/simple/", alice)[0] == 200
    # --overwrite: the same file twice.
    name, data = wheel_bytes("alice-tool", "1.0")
    assert upload(container, name, data, headers=alice)[0] == 200
    assert upload(container, name, data, headers=alice)[0] == 200
    # --acl: alice-* is alice's; other projects are bob's.
    other, other_data = wheel_bytes("shared-tool", "1.0")
    assert upload(container, other, other_data, headers=alice)[0] == 403
    assert upload(container, other, other_data, headers=bob)[0] == 200
    # --max-upload-size 1M and --cache-control 3600, from PYPID_OPTIONS.
    big, big_data = wheel_bytes("alice-big", "1.0", padding=2 * 1024 * 1024)
    assert upload(container, big, big_data, headers=alice)[0] == 413
    status, _ = container.get("/packages/alice_tool-1.0-py3-none-any.whl", alice)
    assert status == 200
    headers = _head(container, "/packages/alice_tool-1.0-py3-none-any.whl", alice)
    assert "max-age=3600" in headers.get("cache-control", ""), headers
    # --log-format json: every line of the container's output is a JSON object.
    lines = [line for line in podman.run("logs", container.name).stdout.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert records and all(isinstance(r, dict) and "time" in r for r in records), lines[:5]
    access = [r for r in records if r.get("namespace") == "pypid.access"]
    assert any(r.get("method") == "POST" and r.get("status") == 403 for r in access), access
    assert any(r.get("code") == 413 and r.get("level") == "warn" for r in access), access


def _head(container: Container, path: str, headers: dict) -> dict:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", container.port, timeout=10)
    connection.request("HEAD", path, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return {k.lower(): v for k, v in response.getheaders()}


def test_environment_variables_fallback_proxy_and_packages(containers, start_server, tmp_path):
    """PYPID_FALLBACK_URL, PYPID_TRUSTED_PROXY (a list) and PYPID_PACKAGES (two directories)."""
    upstream_files = tmp_path / "upstream"
    write_dist(str(upstream_files), wheel_bytes("upstream-only", "2.0"))
    upstream = start_server(str(upstream_files))
    packages = owned_dir(tmp_path / "packages")
    more = tmp_path / "more"
    write_dist(str(more), wheel_bytes("second-dir", "1.0"))
    container = containers(
        env={
            "PYPID_FALLBACK_URL": upstream.url + "simple/",
            "PYPID_TRUSTED_PROXY": "10.0.0.0/8, 127.0.0.1",
            "PYPID_PACKAGES": "/data/packages /data/more",
        },
        volumes=(f"{packages}:/data/packages", f"{more}:/data/more:ro"),
    )
    env = client_env(tmp_path)
    target = tmp_path / "target"
    run(pip("install", "--target", str(target), "--index-url", container.url + "simple/",
            "upstream-only", "second-dir"), env)
    assert dist_infos(target) == ["second_dir-1.0.dist-info", "upstream_only-2.0.dist-info"]
    # The upstream's file is cached under the state directory, never in the listing.
    assert [p.name for p in packages.iterdir() if not p.name.startswith(".pypid")] == []
    forwarded = {"X-Forwarded-Host": "pypi.example.internal", "X-Forwarded-Proto": "https",
                 "X-Forwarded-Prefix": "/pypi"}
    status, body = container.get("/pypi/second-dir/json", forwarded)
    assert status == 200
    urls = [u["url"] for u in json.loads(body)["urls"]]
    assert urls == ["https://pypi.example.internal/pypi/packages/second_dir-1.0-py3-none-any.whl"]


def test_bad_environment_values_stop_it_with_one_line(podman, image):
    result = podman.run("run", "--rm", "--label", LABEL, "--network=host", "-e", "PYPID_OVERWRITE=maybe",
                        image, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "pypid-entrypoint: PYPID_OVERWRITE=maybe: say true or false."
    result = podman.run("run", "--rm", "--label", LABEL, "--network=host", "-e", "PYPID_PASSWORDS=/data/nothing",
                        "-e", f"PYPID_PORT=tcp:{free_port()}:interface=127.0.0.1", image, check=False)
    assert result.returncode == 2
    *_, error, hint = result.stderr.strip().splitlines()
    assert error.startswith("pypid serve: cannot read the password file '/data/nothing'"), result.stderr
    assert hint == "Try 'pypid serve --help' for the options."


def test_a_volume_it_cannot_write_is_served_read_only(podman, containers, tmp_path):
    """A root-owned packages directory: served, with a note saying whose it is; uploads asked for: refused at start."""
    packages = tmp_path / "packages"
    write_dist(str(packages), wheel_bytes("read-only-thing", "1.0"))
    os.chmod(packages, 0o755)
    container = containers(volumes=(f"{packages}:/data/packages",))
    assert container.get("/simple/read-only-thing/")[0] == 200
    assert "/data/packages belongs to 0:0, not writable by uid 9898" in container.logs()
    result = podman.run("run", "--rm", "--label", LABEL, "--network=host", "-v", f"{packages}:/data/packages",
                        "-e", "PYPID_PASSWORDS=.", "-e", "PYPID_AUTHENTICATE=.", "-e",
                        f"PYPID_PORT=tcp:{free_port()}:interface=127.0.0.1", container.image, check=False)
    assert result.returncode == 2
    *_, error, hint = result.stderr.strip().splitlines()
    assert error.startswith("pypid serve: uploads go to '/data/packages', but it is not writable"), result.stderr
    assert hint == "Try 'pypid serve --help' for the options."


def test_pypiserver_command_line(podman, image, containers, tmp_path):
    """
    pypiserver's `command:` (a leading "run", -p, -P, -a, --overwrite, the
    directory) works as it is; the command line wins over the environment.
    """
    packages = owned_dir(tmp_path / "packages")
    auth = owned_dir(tmp_path / "auth")
    htpasswd(auth / ".htpasswd", {"alice": "alice-pw"})
    port = free_port()
    container = containers(
        env={"PYPID_AUTHENTICATE": "update"},
        volumes=(f"{packages}:/data/packages", f"{auth}:/data/auth"),
        args=("run", "-p", f"tcp:{port}:interface=127.0.0.1", "-P", "/data/auth/.htpasswd",
              "-a", "update,download,list", "--overwrite", "/data/packages"),
        wait=False,
    )
    container.port = port  # the command line's, not PYPID_PORT's
    container.start()
    alice = basic("alice", "alice-pw")
    assert container.get("/simple/")[0] == 401
    name, data = wheel_bytes("from-pypiserver", "1.0")
    assert upload(container, name, data, headers=alice)[0] == 200
    assert upload(container, name, data, headers=alice)[0] == 200
    assert (packages / name).read_bytes() == data
    # Only the command line's port is listened on; the health check knows it.
    assert "starting on" in container.logs() and container.logs().count("PypidSite starting on") == 1
    check = podman.run("healthcheck", "run", container.name, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


# --- compose ------------------------------------------------------------------


def substitute(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} should appear once in the example"
    return text.replace(old, new)


class Compose:
    """podman-compose with a unique project name; `down -v` at the end."""

    def __init__(self, podman: Podman, file: Path, env: dict, extra: tuple = ()) -> None:
        self.podman = podman
        self.file = file
        self.files = [a for f in (file, *extra) for a in ("-f", str(f))]
        self.project = f"pypid-test-{SESSION}-{os.urandom(3).hex()}"
        self.env = dict(podman.env, **env)

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [tool("podman-compose"), "-p", self.project, *self.files, *args]
        result = subprocess.run(command, env=self.env, cwd=self.file.parent, capture_output=True,
                                text=True, timeout=300)
        if check:
            assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
        return result

    def container(self, service: str) -> str:
        listed = self.podman.run("ps", "-a", "--filter", f"label=io.podman.compose.project={self.project}",
                                 "--filter", f"label=com.docker.compose.service={service}",
                                 "--format", "{{.Names}}")
        names = listed.stdout.split()
        assert len(names) == 1, listed.stdout
        return names[0]

    def down(self) -> None:
        self("down", "-v", "-t", "5", check=False)
        self.podman.run("volume", "rm", "-f", f"{self.project}_packages", check=False)


def wait_for(url_check, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if url_check():
            return
        time.sleep(0.2)
    raise AssertionError("the composition did not come up")


def test_compose_file_replaces_pypiserver_and_keeps_its_volume(podman, image, tmp_path):
    """
    examples/compose/compose.yaml on the volume pypiserver left (files of uid
    9898), named as the docs say: served at once, uploads protected and
    landing in it, the upstream named by PYPID_FALLBACK_URL, restart: always,
    healthy. The upstream is another pypid on the composition's network (a
    service of a second compose file), as containers do not see the host's
    loopback.
    """
    upstream_files = tmp_path / "upstream"
    write_dist(str(upstream_files), wheel_bytes("from-upstream", "1.0"))
    port = free_port()
    directory = tmp_path / "compose"
    directory.mkdir()
    text = (COMPOSE / "compose.yaml").read_text()
    text = substitute(text, "image: pypid\n", f"image: {image}\n")
    text = substitute(text, '"8080:8080"', f'"127.0.0.1:{port}:8080"')
    (directory / "compose.yaml").write_text(text)
    # The volume as pypiserver's image leaves it: files and directory of uid 9898.
    volume = f"pypiserver_pypi-server-{SESSION}"
    podman.run("volume", "create", "--label", LABEL, volume)
    mountpoint = Path(podman.inspect(volume, "volume")["Mountpoint"])
    os.chown(mountpoint, UID, UID)
    old = Path(write_dist(str(mountpoint), wheel_bytes("uploaded-to-pypiserver", "0.9")))
    os.chown(old, UID, UID)
    keep = "\n".join(docs_block("### Keeping your volumes", "yaml"))
    (directory / "more.yaml").write_text(
        "services:\n  upstream:\n"
        f"    image: {image}\n"
        f"    volumes:\n      - {upstream_files}:/data/packages:ro\n"
        + substitute(keep, "pypiserver_pypi-server", volume) + "\n"
    )
    htpasswd(owned_dir(directory / "auth") / ".htpasswd", {"alice": "alice-pw"})
    compose = Compose(podman, directory / "compose.yaml", {"PYPID_FALLBACK_URL": "http://upstream:8080/simple/"},
                      extra=(directory / "more.yaml",))
    try:
        compose("up", "-d")
        pypid = Container(podman, image)
        pypid.port, pypid.name = port, compose.container("pypid")
        wait_for(lambda: pypid.get("/health")[0] == 200 and b'"ok"' in pypid.get("/health")[1])
        inspected = podman.inspect(pypid.name)
        assert inspected["HostConfig"]["RestartPolicy"]["Name"] == "always"
        env = client_env(tmp_path)
        target = tmp_path / "target"
        run(pip("install", "--target", str(target), "--index-url", pypid.url + "simple/",
                "uploaded-to-pypiserver", "from-upstream"), env)
        assert dist_infos(target) == ["from_upstream-1.0.dist-info", "uploaded_to_pypiserver-0.9.dist-info"]
        name, data = wheel_bytes("new-upload", "1.0")
        assert upload(pypid, name, data)[0] == 401
        assert upload(pypid, name, data, headers=basic("alice", "alice-pw"))[0] == 200
        assert (mountpoint / name).read_bytes() == data and (mountpoint / name).stat().st_uid == UID
        check = podman.run("healthcheck", "run", pypid.name, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        compose.down()


def test_compose_file_needs_the_upstream_named(podman, image, tmp_path):
    """Without PYPID_FALLBACK_URL the compose file says what is missing; a .env file beside it names it too."""
    directory = tmp_path / "compose"
    directory.mkdir()
    shutil.copy(COMPOSE / "compose.yaml", directory)
    compose = Compose(podman, directory / "compose.yaml", {})
    compose.env.pop("PYPID_FALLBACK_URL", None)
    result = compose("config", check=False)
    assert result.returncode != 0
    assert "set PYPID_FALLBACK_URL to the upstream simple index" in result.stdout + result.stderr
    (directory / ".env").write_text("PYPID_FALLBACK_URL=https://index.example/simple/\n")
    result = compose("config")
    assert "PYPID_FALLBACK_URL: https://index.example/simple/" in result.stdout


@pytest.fixture(scope="session")
def nginx_image(podman, base, tmp_path_factory):
    """An nginx image like the official one (conf.d/*.conf in http{}), made from Debian's nginx."""
    directory = tmp_path_factory.mktemp("nginx-image")
    (directory / "Containerfile").write_text(
        "ARG BASE\nFROM ${BASE}\n"
        "RUN apt-get update && apt-get install -y --no-install-recommends nginx"
        " && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default\n"
        'CMD ["nginx", "-g", "daemon off;"]\n'
    )
    tag = f"localhost/pypid-test-nginx:{SESSION}"
    podman.run("build", "--isolation=chroot", "--network=host", "--layers=false", "--pull=never",
               "--build-arg", f"BASE={base}", "--label", LABEL, "-t", tag, str(directory), timeout=600)
    yield tag
    podman.run("rmi", "-f", tag, check=False)


def test_compose_with_nginx_in_front_at_pypi(podman, image, nginx_image, tmp_path):
    """
    examples/compose/compose-nginx.yaml with examples/nginx-pypid.conf as it
    is: pip and twine through https://.../pypi/, links carrying the prefix,
    the client's forged X-Forwarded-* headers not believed.
    """
    http_port, https_port = free_port(), free_port()
    examples = tmp_path / "examples"
    directory = examples / "compose"
    directory.mkdir(parents=True)
    shutil.copy(NGINX_SITE, examples / "nginx-pypid.conf")
    text = (COMPOSE / "compose-nginx.yaml").read_text()
    text = substitute(text, "image: pypid\n", f"image: {image}\n")
    text = substitute(text, "image: nginx:stable\n", f"image: {nginx_image}\n")
    text = substitute(text, '"80:80"', f'"127.0.0.1:{http_port}:80"')
    text = substitute(text, '"443:443"', f'"127.0.0.1:{https_port}:443"')
    (directory / "compose-nginx.yaml").write_text(text)
    (directory / "tls").mkdir()
    tls = make_certificate(directory / "tls")
    htpasswd(owned_dir(directory / "auth") / ".htpasswd", {"alice": "alice-pw"})
    compose = Compose(podman, directory / "compose-nginx.yaml", {})
    base = f"https://127.0.0.1:{https_port}/pypi/"
    env = tls_env(tmp_path)
    try:
        compose("up", "-d")
        health = [sys.executable, "-c", "import ssl, sys, urllib.request; "
                  f"c = ssl.create_default_context(cafile={str(tls.ca)!r}); "
                  f"sys.exit(b'\"ok\"' not in urllib.request.urlopen({base + 'health'!r}, context=c).read())"]
        wait_for(lambda: subprocess.run(health, capture_output=True).returncode == 0)
        dist = tmp_path / "dist"
        dist.mkdir()
        name, data = wheel_bytes("Behind_Nginx", "1.0")
        (dist / name).write_bytes(data)
        run(twine("upload", "--non-interactive", "--repository-url", base, "--cert", str(tls.ca),
                  "-u", "alice", "-p", "alice-pw", str(dist / name)), env)
        target = tmp_path / "target"
        run(pip("install", "--cert", str(tls.ca), "--target", str(target),
                "--index-url", base + "simple/", "behind-nginx"), env)
        assert dist_infos(target) == ["behind_nginx-1.0.dist-info"]
        fetch = [sys.executable, "-c", "import ssl, sys, urllib.request; "
                 f"c = ssl.create_default_context(cafile={str(tls.ca)!r}); "
                 f"r = urllib.request.Request({base + 'pypi/behind-nginx/json'!r}, "
                 "headers={'X-Forwarded-Host': 'evil.example', 'X-Forwarded-Prefix': '/evil'}); "
                 "sys.stdout.write(urllib.request.urlopen(r, context=c).read().decode())"]
        doc = json.loads(run(fetch).stdout)
        assert [u["url"] for u in doc["urls"]] == [f"{base}packages/behind_nginx-1.0-py3-none-any.whl"]
        pypid = compose.container("pypid")
        assert podman.inspect(pypid)["HostConfig"]["RestartPolicy"]["Name"] == "always"
        logs = podman.run("logs", pypid).stdout
        assert "file_upload ok user=alice" in logs, logs
        check = podman.run("healthcheck", "run", pypid, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        compose.down()
