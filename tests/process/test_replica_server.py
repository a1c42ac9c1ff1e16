"""
One pypid replica on the object store and the catalog (a real SeaweedFS,
a real PostgreSQL, a real twistd): uploads by twine, installs by pip and
uv, downloads streamed from the store (Range, HEAD, ETag, If-None-Match,
the .asc and .metadata sidecars), --s3-redirect, the health endpoint, and
bad configuration refused at start in one line.
"""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from pypid.testing import sdist_bytes, wheel_bytes, write_dist
from tests.process.conftest import need_module
from tests.replicas import Replicas, health
from tests.server import tool
from tests.uploadhelp import basic, htpasswd, pip_install, run, twine, upload

need_module("botocore", "pip install 'pypid[replicas]'; scripts/test does")
need_module("psycopg2", "pip install 'pypid[replicas]'; scripts/test does")


@pytest.fixture
def replicas(tmp_path, seaweedfs, postgres):
    made = Replicas(tmp_path, seaweedfs, postgres)
    yield made
    made.stop()


def test_upload_install_and_download(replicas, tmp_path, env):
    """twine uploads, pip and uv install, and every download header is as on one node."""
    passwords = htpasswd(tmp_path / "htpasswd", {"alice": "secret"})
    server = replicas.start("-P", str(passwords))
    dist = tmp_path / "dist"
    dist.mkdir()
    wheel = wheel_bytes("demo_pkg", "1.0", requires_python=">=3.8")
    sdist = sdist_bytes("demo_pkg", "1.0")
    paths = [write_dist(str(dist), built) for built in (wheel, sdist)]
    run(twine("upload", "--repository-url", server.url, "-u", "alice", "-p", "secret", "--disable-progress-bar",
              *paths), env)
    assert health(server)["files"] == 2
    database = replicas.catalog_url.rsplit("/", 1)[1]
    assert replicas.postgres.psql("SELECT DISTINCT uploader FROM pypid_files", database).split() == ["alice"]
    assert replicas.postgres.psql("SELECT DISTINCT actor FROM pypid_changes", database).split() == ["alice"]

    target = tmp_path / "pip-target"
    pip_install(server, env, target, "demo-pkg==1.0")
    assert (target / "demo_pkg").is_dir()
    run([tool("uv"), "pip", "install", "--no-deps", "--target", str(tmp_path / "uv-target"), "--index-url",
         server.url + "simple/", "demo-pkg==1.0"], env)
    assert (tmp_path / "uv-target" / "demo_pkg").is_dir()

    filename, data = wheel
    digest = hashlib.sha256(data).hexdigest()
    status, headers, body = server.get(f"/packages/{filename}")
    assert (status, body) == (200, data)
    assert headers["ETag"] == f'"{digest}"'
    assert headers["Content-Length"] == str(len(data))
    status, headers, body = server.get(f"/packages/{filename}", {"Range": "bytes=10-19"})
    assert (status, body, headers["Content-Range"]) == (206, data[10:20], f"bytes 10-19/{len(data)}")
    status, headers, body = server.get(f"/packages/{filename}", {"If-None-Match": f'"{digest}"'})
    assert (status, body) == (304, b"")
    status, headers, body = server.get(f"/packages/{filename}", method="HEAD")
    assert (status, body, headers["Content-Length"]) == (200, b"", str(len(data)))
    status, headers, body = server.get(f"/packages/{filename}", {"Range": f"bytes={len(data)}-"})
    assert status == 416
    status, _, metadata = server.get(f"/packages/{filename}.metadata")
    assert status == 200 and b"Requires-Python: >=3.8" in metadata
    status, _, _ = server.get(f"/packages/{sdist[0]}.metadata")
    assert status == 404


def test_a_large_file_streams_with_ranges(replicas, tmp_path):
    """A file larger than one read streams from the store, whole and in ranges."""
    server = replicas.start("-a", ".", "-P", ".")
    filename, data = wheel_bytes("big", "1.0", padding=8 * 1024 * 1024)
    status, reason, text = upload(server, filename, data)
    assert status == 200, text
    status, headers, body = server.get(f"/packages/{filename}")
    assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    status, headers, body = server.get(f"/packages/{filename}", {"Range": "bytes=1000000-5000000"})
    assert (status, body) == (206, data[1000000:5000001])
    # Clients that leave mid-answer: the store's transfer stops, nothing goes wrong.
    import socket
    import time

    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(f"GET /packages/{filename} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    time.sleep(0.5)
    assert server.get(f"/packages/{filename}")[2] == data
    assert "Traceback" not in server.log() and "Unhandled" not in server.log(), server.log()[-3000:]


def test_signatures_are_served(replicas, tmp_path):
    server = replicas.start("-a", ".", "-P", ".")
    filename, data = wheel_bytes("signed", "1.0")
    signature = b"-----BEGIN PGP SIGNATURE-----\nxyz\n-----END PGP SIGNATURE-----\n"
    from tests.uploadhelp import form_fields, multipart, post

    fields = form_fields(filename, data) + [("gpg_signature", filename + ".asc", signature)]
    body, content_type = multipart(fields)
    status, _, text = post(server, body, content_type)
    assert status == 200, text
    status, headers, body = server.get(f"/packages/{filename}.asc")
    assert (status, body) == (200, signature)
    status, _, page = server.get("/simple/signed/")
    assert b'data-gpg-sig="true"' in page


def test_redirect_to_a_presigned_url(replicas, tmp_path):
    """--s3-redirect: a 307 to a URL of the store that serves the bytes, for a while."""
    import urllib.request

    server = replicas.start("-a", ".", "-P", ".", "--s3-redirect")
    filename, data = wheel_bytes("redirected", "1.0")
    assert upload(server, filename, data)[0] == 200
    status, headers, body = server.get(f"/packages/{filename}")
    assert status == 307
    location = headers["Location"]
    assert location.startswith(replicas.seaweedfs.endpoint + "/")
    assert "X-Amz-Signature=" in location and "X-Amz-Expires=300" in location
    assert headers["Cache-Control"] == "no-store"
    with urllib.request.urlopen(location, timeout=10) as response:
        assert response.read() == data
    # Signing costs more than the rest of the answer: a URL is reused for a while.
    assert server.get(f"/packages/{filename}")[1]["Location"] == location


def test_bad_configuration_is_refused_in_one_line(replicas, tmp_path):
    """Unknown bucket, wrong key, unreachable endpoint or catalog, bad URLs: one line, no traceback."""
    from tests.realservers import free_port

    def refused(*args: str, env_change: dict | None = None) -> str:
        env = dict(__import__("os").environ)
        env.update(replicas.env())
        env.update(env_change or {})
        result = subprocess.run([tool("twistd"), "-n", "--pidfile=", "pypid", "--port", "tcp:0:interface=127.0.0.1",
                                 "--state-dir", str(tmp_path / "state"), *args],
                                capture_output=True, text=True, env=env, timeout=60, cwd=str(tmp_path))
        assert result.returncode != 0
        output = result.stdout + result.stderr
        assert "Traceback" not in output, output
        return output

    s3 = replicas.seaweedfs
    catalog = replicas.catalog_url
    endpoint = ["--s3-endpoint", s3.endpoint]
    out = refused("--store", f"s3://no-such-bucket/x", *endpoint, "--catalog", catalog)
    assert f"object store: bucket 'no-such-bucket' does not exist at {s3.endpoint}" in out
    out = refused("--store", replicas.store, *endpoint, "--catalog", catalog,
                  env_change={"AWS_SECRET_ACCESS_KEY": "wrong"})
    assert f"the secret key does not match the access key at {s3.endpoint} (credentials from env)" in out
    assert "wrong" not in out.replace("does not match", "")
    out = refused("--store", replicas.store, "--s3-endpoint", f"http://127.0.0.1:{free_port()}",
                  "--catalog", catalog)
    assert "object store: cannot reach the object store at http://127.0.0.1:" in out
    assert "connection refused" in out
    port = free_port()
    out = refused("--store", replicas.store, *endpoint, "--catalog", f"postgresql://pypid@127.0.0.1:{port}/x")
    assert f"cannot connect to the catalog at postgresql://pypid@127.0.0.1:{port}/x" in out
    out = refused("--store", replicas.store, *endpoint, "--catalog", "mysql://x")
    assert "--catalog must be a libpq URL, postgresql://USER@HOST:PORT/DATABASE" in out
    out = refused("--store", "s3://Bad_Bucket", *endpoint, "--catalog", catalog)
    assert "is not a valid bucket name" in out
    out = refused("--store", replicas.store, *endpoint)
    assert "--store needs --catalog postgresql://USER@HOST:PORT/DATABASE" in out
    out = refused("--catalog", catalog)
    assert "--catalog goes with --store s3://BUCKET/PREFIX." in out
    out = refused("--store", replicas.store, *endpoint, "--catalog", catalog, str(tmp_path))
    assert "--store keeps the files in the object store: give no package directory" in out


def test_ftp_remove_and_overwrite_on_any_replica(replicas, tmp_path):
    """FTP uploads, remove_pkg and --overwrite on one replica are seen by another."""
    import io
    import time

    from tests.process.test_ftp import connect, ftp_port
    from tests.uploadhelp import multipart, post

    passwords = htpasswd(tmp_path / "htpasswd", {"alice": "wonderland"})
    a = replicas.start("-P", str(passwords), "--ftp", "tcp:0:interface=127.0.0.1", "-o", name="a")
    b = replicas.start("-P", str(passwords), name="b")
    alice = basic("alice", "wonderland")

    def on_b(path: str, wanted) -> bytes:
        deadline = time.monotonic() + 5
        while True:
            status, _, body = b.get(path)
            if wanted(status, body):
                return body
            assert time.monotonic() < deadline, (path, status)
            time.sleep(0.05)

    name, data = wheel_bytes("by_ftp", "1.0")
    client = connect(ftp_port(a))
    assert client.storbinary(f"STOR {name}", io.BytesIO(data)).startswith("226")
    # The work directory shows nothing of pypid's own.
    assert client.nlst(".") == []
    client.quit()
    assert on_b(f"/packages/{name}", lambda s, body: s == 200) == data

    other = wheel_bytes("by_ftp", "1.0", summary="replaced")[1]
    assert upload(a, name, other, headers=alice)[0] == 200
    assert on_b(f"/packages/{name}", lambda s, body: body == other) == other

    body, content_type = multipart([(":action", None, b"remove_pkg"), ("name", None, b"BY.FTP"),
                                    ("version", None, b"1.0")])
    status, reason, _ = post(a, body, content_type, headers=alice)
    assert status == 200, reason
    on_b("/simple/by-ftp/", lambda s, body: s == 404)
    assert b.get(f"/packages/{name}")[0] == 404
