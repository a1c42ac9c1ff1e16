"""
Receiving an upload's multipart body: the C{content} part streamed straight
into the store's staging area (an L{IStaged}, hashed as it comes), the
other fields kept in memory.

Everything here blocks: call it in a thread.
"""

from __future__ import annotations

import io
from typing import BinaryIO, Callable, NamedTuple, Optional

from pypid.feed.multipart import FilePart, FileWriter, Form, MultipartError, PartHeaders, boundary_of, read_form
from pypid.feed.checks import bad
from pypid.store.interfaces import IStaged

#: Largest detached signature accepted.
MAX_SIGNATURE = 64 * 1024


class BoundedBuffer(io.BytesIO):
    def __init__(self, limit: int, what: str) -> None:
        super().__init__()
        self.limit, self.what = limit, what

    def write(self, data: bytes) -> int:  # type: ignore[override]  # takes bytes only, not any buffer
        if self.tell() + len(data) > self.limit:
            raise MultipartError(f"{self.what} is too large")
        return super().write(data)


class Received(NamedTuple):
    """A parsed upload body, its file part staged in the store."""

    form: Form
    #: The C{content} part's bytes, finished (None if absent).
    content: Optional[IStaged]
    digests: dict[str, str]
    signature: Optional[bytes]


def receive(body: BinaryIO, content_type: bytes, stage: Callable[[], IStaged]) -> Received:
    """
    Parse the multipart C{body}, streaming the C{content} part into a new
    L{IStaged} of C{stage()} (the store's). On any error the staged bytes
    are thrown away and L{UploadError} (400) is raised.
    """
    writers: list[IStaged] = []

    def open_file(headers: PartHeaders) -> FileWriter:
        if headers.name == "content":
            if writers:
                raise MultipartError("Field 'content' was sent more than once.")
            writer = stage()
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
            writer.abort()
        raise bad(f"Malformed multipart/form-data body: {e}")
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    signature = None
    parts: list[FilePart] = form.files.get("gpg_signature", [])
    if parts:
        signature = parts[0].writer.getvalue()  # type: ignore[attr-defined]
    return Received(form, writers[0] if writers else None, digests, signature)
