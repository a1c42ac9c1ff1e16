"""
Receiving an upload's multipart body: the C{content} part streamed into a
temporary file of the store's landing code, hashed as it comes.

Everything here blocks: call it in a thread.
"""

from __future__ import annotations

import io
from typing import BinaryIO, NamedTuple, Optional

from pypid.feed.multipart import FilePart, Form, MultipartError, PartHeaders, boundary_of, read_form
from pypid.feed.checks import bad
from pypid.store.directory.landing import HashingWriter

#: Largest detached signature accepted.
MAX_SIGNATURE = 64 * 1024


class BoundedBuffer(io.BytesIO):
    def __init__(self, limit: int, what: str) -> None:
        super().__init__()
        self.limit, self.what = limit, what

    def write(self, data) -> int:  # type: ignore[override]
        if self.tell() + len(data) > self.limit:
            raise MultipartError(f"{self.what} is too large")
        return super().write(data)


class Received(NamedTuple):
    """A parsed upload body, its file part on disk."""

    form: Form
    #: The C{content} part's temporary file, hashes and size (None if absent).
    content: Optional[HashingWriter]
    digests: dict[str, str]
    signature: Optional[bytes]


def receive(body: BinaryIO, content_type: bytes, directory: str) -> Received:
    """
    Parse the multipart C{body}, streaming the C{content} part into a
    temporary file in C{directory} (hashed as it goes). On any error the
    temporary file is gone and L{UploadError} (400) is raised.
    """
    writers: list[HashingWriter] = []

    def open_file(headers: PartHeaders):
        if headers.name == "content":
            if writers:
                raise MultipartError("Field 'content' was sent more than once.")
            writer = HashingWriter(directory)
            writers.append(writer)
            return writer
        if headers.name == "gpg_signature":
            return BoundedBuffer(MAX_SIGNATURE, "the signature")
        raise MultipartError(f"{headers.name}: Should not be a tuple.")

    try:
        boundary = boundary_of(content_type)
        body.seek(0)
        form = read_form(body.read, boundary, open_file)
        digests = writers[0].finish() if writers else {}
    except MultipartError as e:
        for writer in writers:
            writer.discard()
        raise bad(f"Malformed multipart/form-data body: {e}")
    except BaseException:
        for writer in writers:
            writer.discard()
        raise
    signature = None
    parts: list[FilePart] = form.files.get("gpg_signature", [])
    if parts:
        signature = parts[0].writer.getvalue()  # type: ignore[attr-defined]
    return Received(form, writers[0] if writers else None, digests, signature)
