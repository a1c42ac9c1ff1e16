"""The upstream over TLS: verified by default, a private CA with --upstream-ca."""

from __future__ import annotations

import datetime
import json
import ssl
import time
import urllib.request
from pathlib import Path

from pypid.testing import wheel_bytes, write_dist
from tests.server import PypidServer

JSON = "application/vnd.pypi.simple.v1+json"


def make_ca_and_cert(directory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pypid test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "cert.pem").write_bytes(cert.public_bytes(pem))
    (directory / "key.pem").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))


class TLSServer(PypidServer):
    context: ssl.SSLContext

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}/"

    def log(self) -> str:
        # Twisted says "PypidSite (TLS) starting on N" for TLS ports.
        return super().log().replace("PypidSite (TLS) starting", "PypidSite starting")

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "health", timeout=5, context=self.context) as r:
                    if json.load(r).get("status") == "ok":
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(self.log())


def test_tls_upstream_verified(start_server, tmp_path):
    make_ca_and_cert(tmp_path)
    upstream_dir = tmp_path / "upstream"
    write_dist(str(upstream_dir), wheel_bytes("tls-only", "1.0"))
    port = f"ssl:0:interface=127.0.0.1:privateKey={tmp_path / 'key.pem'}:certKey={tmp_path / 'cert.pem'}"
    upstream = TLSServer([str(upstream_dir)], log_path=tmp_path / "tls.log", port=port)
    upstream.context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    upstream.start()
    try:
        local = tmp_path / "local"
        local.mkdir()
        untrusting = start_server("--fallback-url", upstream.url + "simple/", str(local))
        for _ in range(2):
            status, _, body = untrusting.get("/simple/tls-only/")
            assert status == 504, body
            assert b"(TLS: certificate verify failed)" in body and b"Failure" not in body, body
        assert "GET /simple/tls-only/" not in upstream.log()
        log = untrusting.log()
        lines = [line for line in log.splitlines() if "--upstream-ca FILE" in line]
        assert len(lines) == 1, log
        assert f"TLS with the upstream localhost:{upstream.port} failed (TLS: certificate verify failed)" in lines[0]
        assert "Failure" not in log
        untrusting.stop()
        # A bundle (the system's CAs and the private one, as an intercepting
        # proxy's users have): every certificate in it is trusted.
        bundle = tmp_path / "bundle.pem"
        system = Path("/etc/ssl/certs/ca-certificates.crt")
        bundle.write_bytes((system.read_bytes() if system.exists() else b"") + (tmp_path / "ca.pem").read_bytes())
        for ca in (tmp_path / "ca.pem", bundle):
            trusting = start_server("--fallback-url", upstream.url + "simple/", "--upstream-ca", str(ca), str(local))
            status, _, body = trusting.get("/simple/tls-only/", {"Accept": JSON})
            assert status == 200, body
            (f,) = json.loads(body)["files"]
            status, _, data = trusting.get(f["url"].replace("../../", "/"))
            assert status == 200 and data == (upstream_dir / "tls_only-1.0-py3-none-any.whl").read_bytes()
            trusting.stop()
    finally:
        upstream.stop()


def test_unreadable_or_empty_ca_file_is_refused_at_start(tmp_path):
    """One line, and no start."""
    import subprocess

    from tests.server import tool

    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    local = tmp_path / "local"
    local.mkdir()
    for ca, words in ((empty, "holds no PEM certificate"), (tmp_path / "missing.pem", "cannot be read")):
        result = subprocess.run([tool("twistd"), "-n", "--pidfile=", "pypid", "--port", "tcp:0:interface=127.0.0.1",
                                 "--fallback-url", "https://127.0.0.1:9/simple/", "--upstream-ca", str(ca), str(local)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode != 0
        errors = [line for line in (result.stdout + result.stderr).splitlines() if "--upstream-ca" in line]
        assert len(errors) == 1 and words in errors[0], result.stdout + result.stderr
