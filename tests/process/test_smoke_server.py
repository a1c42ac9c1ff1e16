"""A first end-to-end check: a real twistd serves a directory."""

from pypid.testing import sdist_bytes, wheel_bytes, write_dist


def test_serves_simple_index(packages, start_server):
    """twistd -n pypid lists a wheel found in the package directory."""
    write_dist(str(packages), wheel_bytes("Demo_Pkg", "1.0"))
    write_dist(str(packages), sdist_bytes("Demo_Pkg", "1.0"))
    server = start_server(str(packages))
    status, headers, body = server.get("simple/demo-pkg/")
    assert status == 200
    assert b"demo_pkg-1.0-py3-none-any.whl" in body
    assert b"demo_pkg-1.0.tar.gz" in body
