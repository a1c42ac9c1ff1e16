"""
Validation of legacy-API uploads: the form fields, the filename, the
digests and the archive itself. Every rejection is an L{UploadError} with
the HTTP status and the one-line reason the client shows.

Pure except L{check_archive}, which reads the archive (blocking: run it in a
thread).
"""

from __future__ import annotations

import re
import tarfile
import zipfile
import zlib
from typing import BinaryIO, NamedTuple, Optional

from packaging.version import InvalidVersion, Version

from pypid.index.filenames import ParsedName, parse_filename
from pypid.store import complete
from pypid.store.metadata import CorruptArchive, MetadataError, parse_fields, read_metadata
from pypid.feed.multipart import FilePart, Form
from pypid.index.names import is_valid, normalize


class UploadError(Exception):
    """An upload or removal refused: C{code} and a one-line C{message}."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def bad(message: str) -> UploadError:
    return UploadError(400, message)


#: The status of an upload there is no room for (RFC 4918).
INSUFFICIENT_STORAGE = 507


def no_room(message: str) -> UploadError:
    """507: no room for the upload (a full disk, the spool budget); C{message} says which."""
    return UploadError(INSUFFICIENT_STORAGE, message)


#: Metadata versions accepted in C{metadata_version} (2.0 was never
#: standardised but old wheel builders wrote it).
METADATA_VERSIONS = {"1.0", "1.1", "1.2", "2.0", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6"}

#: Fields that may be sent once only.
SINGLE_FIELDS = (
    ":action", "protocol_version", "name", "version", "filetype", "pyversion",
    "metadata_version", "md5_digest", "sha256_digest", "blake2_256_digest",
)

#: File parts allowed; any other field sent as a file is refused.
FILE_FIELDS = ("content", "gpg_signature")

#: Digest fields and the length of their hex values.
DIGESTS = {"sha256": 64, "blake2_256": 64, "md5": 32}

_FILENAME = re.compile(r"^[A-Za-z0-9_.!+-]+\Z")
_HEX = re.compile(r"^[0-9a-fA-F]+\Z")

#: Refuse archives claiming to unpack to more than this many times their
#: size once that is over 64 MiB (zip bombs), as the public index does.
MAX_RATIO = 50
RATIO_FLOOR = 64 * 1024 * 1024


def field(form: Form, key: str) -> Optional[str]:
    """
    A single-use text field: L{None} when absent, empty or C{UNKNOWN} (a
    distutils leftover); twice is an error.
    """
    values = form.fields.get(key, [])
    if len(values) > 1 and key in SINGLE_FIELDS:
        raise bad(f"Field '{key}' was sent more than once.")
    if not values:
        return None
    value = values[0].strip()
    return None if value in ("", "UNKNOWN") else value


def action(form: Form, query_action: Optional[str] = None) -> str:
    """The C{:action} of a form (or the query string, as the public index allows)."""
    value = field(form, ":action") or query_action
    if not value:
        raise bad("Missing ':action' field!")
    return value


class FileUpload(NamedTuple):
    """A checked C{file_upload} form."""

    name: str
    project: str
    version: Version
    filename: str
    parsed: ParsedName
    content: FilePart
    signature: Optional[FilePart]
    #: Digests the client sent: algorithm -> lower-case hex.
    digests: dict[str, str]


def check_names(form: Form, filename: Optional[str] = None) -> tuple[str, Version]:
    """
    The C{name} and C{version} fields, both required and valid. With the
    C{filename} of an uploaded file, a field that is missing is taken from
    it (C{curl -F :action=file_upload -F content=@x-1.0.tar.gz}, as
    pypiserver allows); the file's metadata is then checked against them
    as against a form's.
    """
    name = field(form, "name")
    text = field(form, "version")
    if (name is None or text is None) and filename is not None:
        parsed = parse_filename(filename)
        if parsed is not None:
            name = name if name is not None else parsed.name
            text = text if text is not None else str(parsed.version)
    if name is None:
        raise bad("Missing 'name' field.")
    if not is_valid(name):
        raise bad(f"'{name}' is an invalid value for Name.")
    if text is None:
        raise bad("Missing 'version' field.")
    try:
        version = Version(text)
    except InvalidVersion:
        raise bad(f"'{text}' is an invalid value for Version (see PEP 440).")
    return name, version


def check_filename(filename: str, filetype: Optional[str], name: str, version: Version) -> ParsedName:
    """
    The upload's filename must be a plain wheel or sdist name (no path, no
    hidden file) of the project and version in the form.
    """
    shown = filename.encode("unicode_escape").decode("ascii")[:200]
    if not filename or "/" in filename or "\\" in filename or filename.startswith(".") \
            or not _FILENAME.match(filename):
        raise bad(f"Bad filename '{shown}': use the distribution's own file name.")
    lower = filename.lower()
    if lower.endswith(".whl"):
        kind = "bdist_wheel"
    elif lower.endswith((".tar.gz", ".zip")):
        kind = "sdist"
    else:
        raise bad(f"Invalid file extension of '{shown}': use .tar.gz, .whl or .zip.")
    if filetype is not None and filetype != kind:
        raise bad(f"File type '{filetype}' does not match the file name '{shown}'.")
    parsed = parse_filename(filename)
    if parsed is None or parsed.packagetype != kind:
        raise bad(f"Bad filename '{shown}': not a valid wheel or sdist name.")
    if parsed.project != normalize(name):
        raise bad(f"Filename '{shown}' is not of the project '{name}' named in the form.")
    if parsed.version != version:
        raise bad(f"Filename '{shown}' is not of version '{version}' named in the form.")
    return parsed


def check_file_upload(form: Form) -> FileUpload:
    """Check a C{file_upload} form before its file is looked at."""
    protocol = field(form, "protocol_version")
    if protocol not in (None, "1"):
        raise bad("Unknown protocol version.")
    for key, parts in form.files.items():
        if key not in FILE_FIELDS:
            raise bad(f"{key}: Should not be a tuple.")
        if len(parts) > 1:
            raise bad(f"Field '{key}' was sent more than once.")
    content = form.files.get("content")
    name, version = check_names(form, content[0].filename if content else None)
    metadata_version = field(form, "metadata_version")
    if metadata_version is not None and metadata_version not in METADATA_VERSIONS:
        raise bad(f"'{metadata_version}' is an invalid value for Metadata-Version.")
    filetype = field(form, "filetype")
    if filetype is not None and filetype not in ("sdist", "bdist_wheel"):
        raise bad(f"Unsupported file type '{filetype}': use sdist or bdist_wheel.")
    digests = {}
    for algorithm, length in DIGESTS.items():
        value = field(form, f"{algorithm}_digest")
        if value is None:
            continue
        if len(value) != length or not _HEX.match(value):
            raise bad(f"Invalid {algorithm}_digest: expected {length} hex digits.")
        digests[algorithm] = value.lower()
    if not content:
        raise bad("Upload payload does not have a file.")
    parsed = check_filename(content[0].filename, filetype, name, version)
    pyversion = field(form, "pyversion")
    if parsed.kind == "sdist" and pyversion not in (None, "source"):
        raise bad(f"Invalid pyversion '{pyversion}' for an sdist: use 'source'.")
    signatures = form.files.get("gpg_signature")
    signature = signatures[0] if signatures else None
    if signature is not None and signature.filename != content[0].filename + ".asc":
        raise bad("Unrelated signature: gpg_signature must be named after the file, with .asc.")
    return FileUpload(name, parsed.project, version, content[0].filename, parsed, content[0],
                      signature, digests)


class Declared(NamedTuple):
    """What an upload says of its file: a form's C{file_upload} fields, or (FTP) its name alone."""

    filename: str
    project: str
    version: Version
    parsed: ParsedName
    #: Digests the client sent: algorithm -> lower-case hex.
    digests: dict[str, str]


def declared_by_name(filename: str) -> Declared:
    """An upload known by its file name alone (FTP): a wheel or sdist name, checked."""
    parsed = parse_filename(filename)
    if parsed is None:
        shown = filename.encode("unicode_escape").decode("ascii")[:200]
        raise bad(f"'{shown}' is not a wheel or sdist file name.")
    check_filename(filename, None, parsed.name, parsed.version)
    return Declared(filename, parsed.project, parsed.version, parsed, {})


def declared_by_form(upload: FileUpload) -> Declared:
    """What a checked C{file_upload} form declares."""
    return Declared(upload.filename, upload.project, upload.version, upload.parsed, upload.digests)


def check_digests(sent: dict[str, str], computed: dict[str, str]) -> None:
    """Each digest the client sent must match the received bytes."""
    for algorithm, value in sent.items():
        if computed.get(algorithm) != value:
            raise bad(
                f"The {algorithm} digest supplied does not match a digest calculated "
                "from the uploaded file."
            )


def check_removal(form: Form) -> tuple[str, Version]:
    """A C{remove_pkg} form: C{name} and C{version}."""
    name, version = field(form, "name"), field(form, "version")
    if name is None or version is None:
        raise bad(f"Missing 'name'/'version' fields: name={name or ''}, version={version or ''}")
    return check_names(form)


# Blocking: run in a thread.


def _check_zip(f: BinaryIO, size: int) -> None:
    f.seek(0)
    with zipfile.ZipFile(f) as archive:
        infos = archive.infolist()
        unpacked = sum(info.file_size for info in infos)
        if unpacked > RATIO_FLOOR and unpacked > MAX_RATIO * max(size, 1):
            raise bad("Invalid distribution file: it unpacks to too much data.")
        for info in infos:
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise bad("Invalid distribution file: zip members must be stored or deflated.")
        broken = archive.testzip()
        if broken is not None:
            raise bad(f"Invalid distribution file: member {broken[:100]} is corrupt.")


def _check_tar(f: BinaryIO, size: int) -> None:
    limit = max(RATIO_FLOOR, MAX_RATIO * max(size, 1))
    total = 0
    f.seek(0)
    with tarfile.open(fileobj=f, mode="r:gz") as archive:
        for member in archive:
            if member.issparse():
                raise bad("Invalid distribution file: sparse tar members are not accepted.")
            total += member.size
            if total > limit:
                raise bad("Invalid distribution file: it unpacks to too much data.")
            if member.isfile():
                extracted = archive.extractfile(member)
                assert extracted is not None
                while extracted.read(1024 * 1024):
                    pass


def check_archive(f: BinaryIO, upload: "Declared | FileUpload", size: int) -> None:
    """
    The archive C{f} (a seekable binary file of C{size} bytes) must be
    complete by the rule that decides listing (L{pypid.store.complete.check}),
    open, be intact throughout, and hold core metadata (wheel C{METADATA},
    sdist C{PKG-INFO}) whose name and version agree with the filename; a
    wheel must have its C{WHEEL} and C{RECORD} files.
    """
    parsed = upload.parsed
    # The rule that decides listing: what would never be listed is refused.
    f.seek(0)
    reason = complete.check(f, size, upload.filename)
    f.seek(0)
    if reason is not None:
        if complete.is_incomplete(reason):
            reason = reason.split(": ", 1)[-1]
        raise bad(f"Invalid distribution file: {_one_line(reason)}")
    try:
        if path_is_zip(upload.filename):
            _check_zip(f, size)
        else:
            _check_tar(f, size)
        f.seek(0)
        raw = read_metadata(f, parsed.kind, upload.filename)
    except CorruptArchive as e:
        raise bad(f"Invalid distribution file: {_one_line(e)}")
    except MetadataError as e:
        raise bad(f"Invalid distribution file: {_one_line(e)}")
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, tarfile.TarError, ValueError) as e:
        raise bad(f"Invalid distribution file: {_one_line(e)}")
    fields = parse_fields(raw)
    if fields.name is None or normalize(fields.name) != parsed.project:
        raise bad(f"The metadata's Name '{fields.name or ''}' does not match the file name.")
    try:
        metadata_version = Version(fields.version or "")
    except InvalidVersion:
        raise bad(f"The metadata's Version '{fields.version or ''}' is not a valid version.")
    if metadata_version != parsed.version:
        raise bad(f"The metadata's Version '{fields.version}' does not match the file name.")
    if parsed.kind == "wheel":
        f.seek(0)
        with zipfile.ZipFile(f) as archive:
            names = set(archive.namelist())
        info = {n.split("/", 1)[0] for n in names if n.split("/", 1)[0].endswith(".dist-info")}
        for required in ("WHEEL", "RECORD"):
            if not any(f"{d}/{required}" in names for d in info):
                raise bad(f"Invalid distribution file: the wheel has no .dist-info/{required}.")


def path_is_zip(filename: str) -> bool:
    return filename.lower().endswith((".whl", ".zip"))


def _one_line(e: Exception | str) -> str:
    return " ".join(str(e).split())[:200]
