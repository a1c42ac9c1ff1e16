"""
Test and benchmark helpers shipped with pypid: builders for small but real
wheels and sdists (installable by pip and uv without any build dependency);
the in-memory L{IPackageStore} (L{pypid.store.memory.MemoryStore}) is
re-exported here.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import zipfile
from typing import Iterable, Optional

from pypid.index.names import normalize
from pypid.store.memory import MemoryStore  # noqa: F401 (re-exported)


def _escape(name: str) -> str:
    return normalize(name).replace("-", "_")


def metadata_text(
    name: str,
    version: str,
    requires_python: Optional[str] = None,
    requires: Iterable[str] = (),
    summary: Optional[str] = None,
    metadata_version: str = "2.1",
) -> str:
    lines = [f"Metadata-Version: {metadata_version}", f"Name: {name}", f"Version: {version}"]
    lines.append(f"Summary: {summary if summary is not None else f'The {name} test package'}")
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines.extend(f"Requires-Dist: {r}" for r in requires)
    return "\n".join(lines) + "\n\n"


def _module_source(name: str, version: str) -> str:
    return f'"""The {name} test package."""\n__version__ = {version!r}\n'


def wheel_bytes(
    name: str,
    version: str,
    requires_python: Optional[str] = None,
    requires: Iterable[str] = (),
    summary: Optional[str] = None,
    padding: int = 0,
) -> tuple[str, bytes]:
    """
    Build a pure-Python wheel in memory.

    @param padding: bytes of incompressible data to add, for large files.
    @return: (filename, content).
    """
    dist = _escape(name)
    module = dist
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": _module_source(name, version).encode(),
        f"{info}/METADATA": metadata_text(name, version, requires_python, requires, summary).encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: pypid.testing\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/top_level.txt": f"{module}\n".encode(),
    }
    if padding:
        files[f"{module}/padding.bin"] = os.urandom(padding)
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0)), data,
                             compress_type=zipfile.ZIP_STORED if path.endswith(".bin") else zipfile.ZIP_DEFLATED)
    return f"{dist}-{version}-py3-none-any.whl", buffer.getvalue()


_BACKEND = '''"""A build backend with no dependencies, for pypid's test sdists."""
import base64, hashlib, os, zipfile

def _files():
    out = {}
    for top, dirs, names in os.walk("src"):
        for n in names:
            p = os.path.join(top, n)
            out[os.path.relpath(p, "src").replace(os.sep, "/")] = open(p, "rb").read()
    return out

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    meta = open("PKG-INFO", "rb").read()
    name = NAME
    version = VERSION
    info = f"{name}-{version}.dist-info"
    files = _files()
    files[f"{info}/METADATA"] = meta
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\\nGenerator: pypid-test-backend\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    record = []
    for path, data in files.items():
        d = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={d},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\\n".join(record) + "\\n").encode()
    filename = f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return filename

def get_requires_for_build_wheel(config_settings=None):
    return []
'''


def sdist_bytes(
    name: str,
    version: str,
    requires_python: Optional[str] = None,
    requires: Iterable[str] = (),
    summary: Optional[str] = None,
) -> tuple[str, bytes]:
    """
    Build an sdist (C{.tar.gz}) in memory whose in-tree build backend needs
    nothing from an index, so pip and uv can build it offline.
    """
    dist = _escape(name)
    top = f"{dist}-{version}"
    backend = _BACKEND.replace("NAME", repr(dist)).replace("VERSION", repr(version))
    pkg_info = metadata_text(name, version, requires_python, requires, summary, "2.2").encode()
    files = {
        f"{top}/PKG-INFO": pkg_info,
        f"{top}/pyproject.toml": (
            "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n\n"
            f"[project]\nname = \"{name}\"\nversion = \"{version}\"\n"
        ).encode(),
        f"{top}/backend.py": backend.encode(),
        f"{top}/src/{dist}/__init__.py": _module_source(name, version).encode(),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = 1704067200
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return f"{top}.tar.gz", buffer.getvalue()


def write_dist(directory: str, built: tuple[str, bytes], mtime: Optional[float] = None) -> str:
    """Write a built distribution into C{directory}; return its path."""
    filename, data = built
    path = os.path.join(directory, filename)
    os.makedirs(directory, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path
