"""
Core metadata: reading it out of distribution archives and the few fields an
index needs from it.

These functions do blocking file I/O: call them from a thread, never from the
reactor thread. An archive is a path, or a seekable binary file (then its
file name says what kind of archive it is).
"""

from __future__ import annotations

import email.parser
import os
import tarfile
import zipfile
import zlib
from typing import BinaryIO, NamedTuple, Optional, Union

#: An archive: its path, or a seekable binary file.
Source = Union[str, BinaryIO]

#: The largest core metadata file (a wheel's METADATA, an sdist's PKG-INFO)
#: read: real ones are a few KiB, the largest (long changelogs kept as the
#: description) a few hundred. A bigger one is refused at upload, and a
#: listed wheel with one gets no C{.metadata} file (clients then read the
#: wheel itself). Also what keeps a tiny archive from unpacking into
#: gigabytes here.
MAX_METADATA_SIZE = 2 * 1024 * 1024


class MetadataError(Exception):
    """The archive has no usable metadata file."""


class CorruptArchive(MetadataError):
    """The archive cannot be read at all: corrupt, truncated or not an archive."""


class MetadataTooLarge(MetadataError):
    """The core metadata file is over L{MAX_METADATA_SIZE}."""

    def __init__(self, member: str, size: int) -> None:
        super().__init__(
            f"{member} is too large: {size:,} bytes, over the limit of {MAX_METADATA_SIZE:,}"
            f" ({MAX_METADATA_SIZE // (1024 * 1024)} MiB)"
        )
        self.size = size


def _wheel_metadata_member(names: list[str]) -> str:
    dist_infos = {
        name.split("/", 1)[0]
        for name in names
        if "/" in name and name.split("/", 1)[0].endswith(".dist-info")
    }
    if len(dist_infos) != 1:
        raise MetadataError(
            f"expected one top-level .dist-info directory, found {len(dist_infos)}"
        )
    member = dist_infos.pop() + "/METADATA"
    if member not in names:
        raise MetadataError(f"the wheel has no {member}")
    return member


def read_wheel_metadata(path: Source) -> bytes:
    """
    Return the bytes of a wheel's C{.dist-info/METADATA}, unchanged.

    @raise MetadataError: the file is not a readable wheel, or has no
        single C{.dist-info} directory with a C{METADATA} file.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            member = _wheel_metadata_member(archive.namelist())
            info = archive.getinfo(member)
            if info.file_size > MAX_METADATA_SIZE:
                raise MetadataTooLarge(member, info.file_size)
            # (zipfile reads no more than the size the header gives.)
            return archive.read(member)
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise CorruptArchive(f"unreadable wheel: {e}") from e


def _is_pkg_info(name: str) -> bool:
    parts = name.strip("/").split("/")
    return len(parts) == 2 and parts[1] == "PKG-INFO"


def read_sdist_metadata(path: Source, filename: Optional[str] = None) -> bytes:
    """
    Return the bytes of an sdist's top-level C{PKG-INFO}.

    @param filename: the archive's file name, when C{path} is a file.
    @raise MetadataError: the archive is unreadable or has no C{PKG-INFO}.
    """
    name = filename if filename is not None else path if isinstance(path, str) else ""
    try:
        if name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if _is_pkg_info(info.filename):
                        if info.file_size > MAX_METADATA_SIZE:
                            raise MetadataTooLarge(info.filename, info.file_size)
                        return archive.read(info)
        else:
            opened = tarfile.open(path, "r:*") if isinstance(path, str) else tarfile.open(fileobj=path, mode="r:*")
            with opened as archive:
                for member in archive:
                    if member.isfile() and _is_pkg_info(member.name):
                        if member.size > MAX_METADATA_SIZE:
                            raise MetadataTooLarge(member.name, member.size)
                        extracted = archive.extractfile(member)
                        assert extracted is not None
                        return extracted.read()
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as e:
        raise CorruptArchive(f"unreadable archive: {e}") from e
    raise MetadataError("the archive has no top-level PKG-INFO")


def read_metadata(path: Source, kind: str, filename: Optional[str] = None) -> bytes:
    """
    Read the core metadata file of a wheel or sdist at C{path} (or in that
    file, named C{filename}).
    """
    if kind == "wheel":
        return read_wheel_metadata(path)
    if kind == "sdist":
        return read_sdist_metadata(path, filename)
    raise MetadataError(f"no metadata is read from {kind} files")


class Fields(NamedTuple):
    """The metadata fields an index page shows."""

    name: Optional[str]
    version: Optional[str]
    summary: Optional[str]
    requires_python: Optional[str]


def parse_fields(raw: bytes) -> Fields:
    """Pick C{Name}, C{Version}, C{Summary} and C{Requires-Python}."""
    message = parse_message(raw)

    def get(key: str) -> Optional[str]:
        value = message.get(key)
        if value is None:
            return None
        value = str(value).strip()
        return value or None

    return Fields(get("Name"), get("Version"), get("Summary"), get("Requires-Python"))


def parse_message(raw: bytes) -> email.message.Message:
    """Parse core metadata (RFC 822 style headers, UTF-8) into a message."""
    text = raw.decode("utf-8", errors="replace")
    return email.parser.HeaderParser().parsestr(text)
