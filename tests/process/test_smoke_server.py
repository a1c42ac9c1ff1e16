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


def test_start_up_line_says_where_it_serves(packages, start_server):
    """Once the first scan is done, one line gives the URL and the counts, in good English."""
    write_dist(str(packages), wheel_bytes("Demo_Pkg", "1.0"))
    server = start_server(str(packages))
    assert f"serving http://127.0.0.1:{server.port}/simple/ : 1 project, 1 file" in server.log()
    write_dist(str(packages), sdist_bytes("Demo_Pkg", "1.0"))
    write_dist(str(packages), wheel_bytes("other", "2.0"))
    second = start_server("--port", "tcp:0:interface=127.0.0.1", str(packages))
    assert (f"serving http://127.0.0.1:{second.port}/simple/, http://127.0.0.1:" in second.log())
    assert "/simple/ : 2 projects, 3 files" in second.log()
