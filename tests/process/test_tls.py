"""TLS through an ssl: endpoint string; pip (--cert) and uv (SSL_CERT_FILE) trust a test CA."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import NamedTuple

import pytest

from pypid.testing import wheel_bytes, write_dist
from tests.server import PypidServer, client_env, tool

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


class TLSFiles(NamedTuple):
    #: The private CA's certificate: what clients trust (pip --cert, SSL_CERT_FILE).
    ca: Path
    #: The server's certificate and key, signed by the CA.
    cert: Path
    key: Path


def _name(common: str) -> "x509.Name":
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _usage(**on) -> "x509.KeyUsage":
    flags = dict(digital_signature=False, content_commitment=False, key_encipherment=False,
                 data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                 encipher_only=False, decipher_only=False)
    flags.update(on)
    return x509.KeyUsage(**flags)


def make_certificate(directory: Path, names=("localhost",), ips=("127.0.0.1",)) -> TLSFiles:
    """
    A private CA and a server certificate it signs for C{names} and C{ips},
    as the README's openssl recipe makes them (uv, unlike pip, refuses a
    self-signed CA certificate used as the server's own).
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("pypid test CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0])).issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TLSFiles(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    files.key.chmod(0o600)
    return files


class TLSServer(PypidServer):
    """A pypid on an ssl: endpoint; C{url} is https and readiness is checked over TLS."""

    cafile: str = ""

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cafile)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "health", timeout=5, context=self.context()) as r:
                    if json.load(r).get("status") == "ok":
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"pypid did not become ready over TLS:\n{self.log()}")


@pytest.fixture
def tls_server(tmp_path, packages):
    pytest.importorskip("OpenSSL", reason="Twisted's ssl: endpoint needs pyOpenSSL (Debian: python3-openssl)")
    write_dist(str(packages), wheel_bytes("Demo_App", "1.0", requires=["demo-lib"]))
    write_dist(str(packages), wheel_bytes("demo-lib", "2.0"))
    tls = make_certificate(tmp_path)
    server = TLSServer([str(packages)], log_path=tmp_path / "twistd-tls.log",
                       port=f"ssl:0:privateKey={tls.key}:certKey={tls.cert}:interface=127.0.0.1")
    server.cafile = str(tls.ca)
    server.start()
    yield server, tls.ca
    server.stop()


def tls_env(tmp_path) -> dict:
    """
    The isolated client environment, without the machine's CA bundle
    variables: requests lets REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE override
    pip's --cert.
    """
    env = client_env(tmp_path)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT"):
        env.pop(name, None)
    return env


def test_pip_installs_over_tls_with_cert(tls_server, tmp_path):
    """pip verifies the server against --cert and installs with its dependency: no --trusted-host."""
    server, cert = tls_server
    env = tls_env(tmp_path)
    target = tmp_path / "target"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--cert", str(cert), "--target", str(target),
         "--index-url", server.url + "simple/", "demo-app"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in target.glob("*.dist-info")) == ["demo_app-1.0.dist-info", "demo_lib-2.0.dist-info"]


def test_uv_installs_over_tls_with_ssl_cert_file(tls_server, tmp_path):
    """uv trusts the private CA through SSL_CERT_FILE."""
    server, ca = tls_server
    env = tls_env(tmp_path)
    env["SSL_CERT_FILE"] = str(ca)
    env.pop("SSL_CERT_DIR", None)
    result = subprocess.run(
        [tool("uv"), "pip", "install", "--python", sys.executable, "--target", str(tmp_path / "target"),
         "--index-url", server.url + "simple/", "demo-app"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "target" / "demo_app").is_dir()


def test_pip_refuses_without_the_cert(tls_server, tmp_path):
    """Without --cert the self-signed certificate is not trusted: the TLS check is real."""
    server, _ = tls_server
    env = tls_env(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(tmp_path / "d"),
         "--index-url", server.url + "simple/", "demo-app"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in result.stdout + result.stderr or "SSL" in result.stdout + result.stderr


def test_absolute_urls_say_https(tls_server):
    server, _ = tls_server
    with urllib.request.urlopen(server.url + "pypi/demo-app/json", context=server.context()) as r:
        doc = json.load(r)
    assert doc["urls"][0]["url"].startswith(server.url + "packages/")


def test_workers_serve_tls(tmp_path, packages):
    """--workers over an ssl: endpoint: each worker speaks TLS on the shared socket."""
    pytest.importorskip("OpenSSL", reason="Twisted's ssl: endpoint needs pyOpenSSL (Debian: python3-openssl)")
    write_dist(str(packages), wheel_bytes("demo-lib", "2.0"))
    tls = make_certificate(tmp_path)
    server = TLSServer(["--workers", "2", str(packages)], log_path=tmp_path / "twistd-tls-workers.log",
                       port=f"ssl:0:privateKey={tls.key}:certKey={tls.cert}:interface=127.0.0.1")
    server.cafile = str(tls.ca)
    server.start()
    try:
        deadline = time.monotonic() + 30
        while "worker 1 is ready" not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        # New connections go to whichever worker takes them first: on a busy
        # machine one may take many in a row, so ask until both have answered.
        workers: set = set()
        deadline = time.monotonic() + 30
        while workers != {0, 1} and time.monotonic() < deadline:
            with urllib.request.urlopen(server.url + "health", timeout=10, context=server.context()) as r:
                workers.add(json.load(r)["worker"])
            with urllib.request.urlopen(server.url + "simple/demo-lib/", timeout=10, context=server.context()) as r:
                assert b"demo_lib-2.0-py3-none-any.whl" in r.read()
            time.sleep(0.01)
        assert workers == {0, 1}, server.log()
    finally:
        server.stop()
