"""
A small streaming C{multipart/form-data} parser (RFC 7578, RFC 2046 §5.1).

Uploads can be gigabytes: the body is fed in chunks of any size and file
parts are handed to a writer as they go, so memory stays bounded whatever
the client sends. Text fields are kept in memory, within limits. Pure: no
I/O of its own, no Twisted.
"""

from __future__ import annotations

import re
from typing import Callable, NamedTuple, Optional, Protocol
from urllib.parse import unquote

#: Largest header block of one part.
MAX_HEADER_SIZE = 16 * 1024


class MultipartError(ValueError):
    """The body is not well-formed C{multipart/form-data}, or breaks a limit."""


_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def _params(value: str) -> tuple[str, dict[str, str]]:
    """
    Split a header value such as C{form-data; name="a"; filename="b"} into
    its first token (lower-cased) and its parameters (names lower-cased).
    Quoted strings may contain C{;} and backslash escapes; C{name*=} values
    (RFC 5987) are percent-decoded and win over plain ones.
    """
    params: dict[str, str] = {}
    extended: dict[str, str] = {}
    i, n = 0, len(value)

    def skip_ws(i: int) -> int:
        while i < n and value[i] in " \t":
            i += 1
        return i

    end = value.find(";")
    first = (value if end < 0 else value[:end]).strip().lower()
    i = n if end < 0 else end + 1
    while i < n:
        i = skip_ws(i)
        eq = value.find("=", i)
        semi = value.find(";", i)
        if eq < 0 or (0 <= semi < eq):
            # A parameter without a value: ignore it.
            if semi < 0:
                break
            i = semi + 1
            continue
        key = value[i:eq].strip().lower()
        i = skip_ws(eq + 1)
        if i < n and value[i] == '"':
            i += 1
            out = []
            while i < n and value[i] != '"':
                if value[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(value[i])
                i += 1
            if i >= n:
                raise MultipartError("unterminated quoted string in a part header")
            i += 1
            text = "".join(out)
            semi = value.find(";", i)
            i = n if semi < 0 else semi + 1
        else:
            semi = value.find(";", i)
            text = (value[i:] if semi < 0 else value[i:semi]).strip()
            i = n if semi < 0 else semi + 1
        if key.endswith("*"):
            charset, _, rest = text.partition("'")
            _, _, encoded = rest.partition("'")
            try:
                extended[key[:-1]] = unquote(encoded, encoding=charset or "utf-8", errors="strict")
            except (LookupError, UnicodeDecodeError):
                raise MultipartError(f"undecodable {key} parameter in a part header")
        else:
            params[key] = text
    params.update(extended)
    return first, params


def boundary_of(content_type: bytes) -> bytes:
    """
    The boundary of a C{multipart/form-data} Content-Type header value.

    @raise MultipartError: not multipart/form-data, or no usable boundary.
    """
    try:
        text = content_type.decode("latin-1")
    except AttributeError:
        text = str(content_type)
    kind, params = _params(text)
    if kind != "multipart/form-data":
        raise MultipartError(f"expected multipart/form-data, not {kind or 'nothing'}")
    boundary = params.get("boundary", "")
    if not 1 <= len(boundary) <= 200:
        raise MultipartError("multipart/form-data without a usable boundary")
    try:
        return boundary.encode("ascii")
    except UnicodeEncodeError:
        raise MultipartError("non-ASCII multipart boundary")


class PartHeaders(NamedTuple):
    """What a part's headers say."""

    #: The form field name.
    name: str
    #: The file name, or L{None} for a plain field.
    filename: Optional[str]
    #: The part's Content-Type, or L{None} when absent.
    content_type: Optional[str]


def parse_part_headers(block: bytes) -> PartHeaders:
    """Parse the header block of one part (without the final blank line)."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        text = block.decode("latin-1")
    headers: dict[str, str] = {}
    for line in text.split("\r\n"):
        if not line:
            continue
        if line[0] in " \t":
            raise MultipartError("folded part headers are not supported")
        key, sep, value = line.partition(":")
        if not sep or not _TOKEN.match(key.encode("latin-1", "replace")):
            raise MultipartError(f"malformed part header line {line[:60]!r}")
        headers[key.strip().lower()] = value.strip()
    disposition = headers.get("content-disposition")
    if disposition is None:
        raise MultipartError("a part has no Content-Disposition header")
    kind, params = _params(disposition)
    if kind != "form-data" or "name" not in params:
        raise MultipartError("a part's Content-Disposition is not form-data with a name")
    return PartHeaders(params["name"], params.get("filename"), headers.get("content-type"))


_PREAMBLE, _AFTER_DELIMITER, _HEADERS, _BODY, _END = range(5)


class MultipartParser:
    """
    A push parser: L{feed} it the body in chunks of any size, then L{close}.

    For each part it calls C{on_begin(PartHeaders)}, C{on_data(bytes)} any
    number of times, then C{on_end()}. Raises L{MultipartError} on a
    malformed body, including one that ends before its closing boundary.
    """

    def __init__(
        self,
        boundary: bytes,
        on_begin: Callable[[PartHeaders], None],
        on_data: Callable[[bytes], None],
        on_end: Callable[[], None],
        max_header_size: int = MAX_HEADER_SIZE,
    ) -> None:
        if not boundary:
            raise MultipartError("empty multipart boundary")
        self._delimiter = b"\r\n--" + boundary
        self._on_begin, self._on_data, self._on_end = on_begin, on_data, on_end
        self._max_header_size = max_header_size
        # The first boundary needs no CRLF before it: pretend there was one.
        self._buffer = bytearray(b"\r\n")
        self._state = _PREAMBLE
        self._parts = 0

    @property
    def parts(self) -> int:
        """How many parts have begun."""
        return self._parts

    def feed(self, data: bytes) -> None:
        if self._state == _END:
            return
        self._buffer += data
        while self._step():
            pass

    def close(self) -> None:
        if self._state != _END:
            raise MultipartError("the body ends before the closing multipart boundary")

    def _step(self) -> bool:
        """Make what progress the buffer allows; whether to go on."""
        buffer, delimiter = self._buffer, self._delimiter
        if self._state == _PREAMBLE:
            at = buffer.find(delimiter)
            if at < 0:
                # Keep only what could be the start of the delimiter.
                del buffer[: max(0, len(buffer) - len(delimiter) + 1)]
                return False
            del buffer[: at + len(delimiter)]
            self._state = _AFTER_DELIMITER
            return True
        if self._state == _AFTER_DELIMITER:
            if len(buffer) < 2:
                return False
            if buffer[:2] == b"--":
                self._state = _END
                del buffer[:]
                return False
            # Transport padding (spaces, tabs) may precede the CRLF.
            i = 0
            while i < len(buffer) and buffer[i] in b" \t":
                i += 1
            if i > 1024:
                raise MultipartError("garbage after a multipart boundary")
            if len(buffer) - i < 2:
                return False
            if buffer[i : i + 2] != b"\r\n":
                raise MultipartError("a multipart boundary is not followed by CRLF")
            del buffer[: i + 2]
            self._state = _HEADERS
            return True
        if self._state == _HEADERS:
            if buffer[:2] == b"\r\n":
                block, skip = b"", 2
            else:
                at = buffer.find(b"\r\n\r\n", 0, self._max_header_size + 4)
                if at < 0:
                    if len(buffer) > self._max_header_size + 4:
                        raise MultipartError("a part's headers are too large")
                    return False
                block, skip = bytes(buffer[:at]), at + 4
            headers = parse_part_headers(block)
            del buffer[:skip]
            self._parts += 1
            self._state = _BODY
            self._on_begin(headers)
            return True
        if self._state == _BODY:
            at = buffer.find(delimiter)
            if at < 0:
                keep = len(delimiter) - 1
                if len(buffer) > keep:
                    cut = len(buffer) - keep
                    chunk = bytes(buffer[:cut])
                    del buffer[:cut]
                    self._on_data(chunk)
                return False
            if at:
                self._on_data(bytes(buffer[:at]))
            del buffer[: at + len(delimiter)]
            self._state = _AFTER_DELIMITER
            self._on_end()
            return True
        return False


class FileWriter(Protocol):
    """Where the bytes of one file part go."""

    def write(self, data: bytes) -> object: ...


class FilePart(NamedTuple):
    name: str
    filename: str
    content_type: Optional[str]
    #: Whatever the writer factory returned for this part.
    writer: object
    size: int


class Form(NamedTuple):
    #: Text fields: name -> values, in order.
    fields: dict[str, list[str]]
    #: File parts: name -> parts, in order.
    files: dict[str, list[FilePart]]


class Limits(NamedTuple):
    #: Most parts in one body.
    parts: int = 1000
    #: Total bytes of all text fields together.
    text_bytes: int = 32 * 1024 * 1024


class FormCollector:
    """
    A whole C{multipart/form-data} form, pushed in chunks (L{feed}, then
    L{close}): text fields are decoded as UTF-8 and kept (within
    C{limits}); file parts (those with a C{filename}) are streamed into the
    writer C{open_file(headers)} returns, which may raise L{MultipartError}
    to refuse a part.
    """

    def __init__(self, boundary: bytes, open_file: Callable[[PartHeaders], FileWriter],
                 limits: Limits = Limits()) -> None:
        self._open_file = open_file
        self._limits = limits
        self.fields: dict[str, list[str]] = {}
        self.files: dict[str, list[FilePart]] = {}
        self._text = 0
        self._headers: Optional[PartHeaders] = None
        self._size = 0
        self._writer: Optional[FileWriter] = None
        self._chunks: list[bytes] = []
        self._parser = MultipartParser(boundary, self._begin, self._data, self._end)

    def feed(self, data: bytes) -> None:
        self._parser.feed(data)

    def close(self) -> Form:
        """The form; L{MultipartError} when the body ended before its closing boundary."""
        self._parser.close()
        return Form(self.fields, self.files)

    def _begin(self, headers: PartHeaders) -> None:
        if self._parser.parts > self._limits.parts:
            raise MultipartError(f"more than {self._limits.parts} form parts")
        self._headers = headers
        self._size = 0
        self._chunks = []
        self._writer = self._open_file(headers) if headers.filename is not None else None

    def _data(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._writer is not None:
            self._writer.write(chunk)
            return
        self._text += len(chunk)
        if self._text > self._limits.text_bytes:
            raise MultipartError("the form's text fields are too large")
        self._chunks.append(chunk)

    def _end(self) -> None:
        headers = self._headers
        assert headers is not None
        if self._writer is not None:
            part = FilePart(headers.name, headers.filename or "", headers.content_type, self._writer, self._size)
            self.files.setdefault(headers.name, []).append(part)
            return
        raw = b"".join(self._chunks)
        self._chunks = []
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MultipartError(f"form field {headers.name!r} is not UTF-8")
        self.fields.setdefault(headers.name, []).append(text)


def read_form(
    read: Callable[[int], bytes],
    boundary: bytes,
    open_file: Callable[[PartHeaders], FileWriter],
    limits: Limits = Limits(),
    chunk_size: int = 256 * 1024,
) -> Form:
    """
    Parse a whole C{multipart/form-data} body from C{read} (a file's read
    method) with a L{FormCollector}.
    """
    collector = FormCollector(boundary, open_file, limits)
    while True:
        chunk = read(chunk_size)
        if not chunk:
            break
        collector.feed(chunk)
    return collector.close()
