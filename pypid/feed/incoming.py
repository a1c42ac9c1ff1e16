"""
Receiving an upload as it arrives: a C{multipart/form-data} body pushed in
chunks (L{FormReceiver}), its C{content} part written straight into the
store's staging area (an L{IStaged}: for the directory store, a temporary
file on the package directory's own filesystem, later renamed into place,
so an upload's bytes are written once) by a L{StagedWriter}, which hashes
and writes in threads, in order, holding little: past L{HIGH_WATER} bytes
waiting, the sender is paused. Text fields and the detached signature are
kept in memory, within limits.

The bytes of every upload in flight count against one L{SpoolBudget}
(C{--max-spool}), HTTP and FTP alike.

Runs on the reactor thread; the blocking work goes through a
L{pypid.threads.Threads}.
"""

from __future__ import annotations

import io
from typing import BinaryIO, Callable, NamedTuple, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from pypid.counts import human_size
from pypid.feed.checks import UploadError, bad, no_room
from pypid.feed.multipart import FileWriter, Form, FormCollector, Limits, MultipartError, PartHeaders, boundary_of
from pypid.store.interfaces import IStaged, StoreFull
from pypid.threads import Threads

#: Largest detached signature accepted.
MAX_SIGNATURE = 64 * 1024
#: Bytes waiting to be written past which the sender is paused...
HIGH_WATER = 1024 * 1024
#: ...and under which it is resumed.
LOW_WATER = 256 * 1024


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


class SpoolBudget:
    """
    The bytes all uploads in flight may hold at once (C{--max-spool}):
    each reserves what it declares (or what arrives) and gives it back when
    it is done.
    """

    def __init__(self, total: Optional[int]) -> None:
        #: L{None}: no limit.
        self.total = total
        self.held = 0

    def reserve(self, size: int) -> bool:
        """Take C{size} bytes of the budget; False (and nothing taken) when they are not there."""
        if self.total is not None and self.held + size > self.total:
            return False
        self.held += size
        return True

    def release(self, size: int) -> None:
        self.held -= size

    def refusal(self) -> str:
        """What an upload the budget has no room for is told (HTTP 507, FTP 552)."""
        return (f"Insufficient Storage: uploads in flight already hold {human_size(self.held)} of this "
                f"server's {human_size(self.total or 0)} for them (--max-spool); try again shortly.")


def _write_all(staged: IStaged, chunks: list[bytes]) -> None:
    for chunk in chunks:
        staged.write(chunk)


class StagedWriter:
    """
    Writes an upload's bytes into C{staged} in threads (disk writes and
    hashing never on the reactor thread), in order, one job at a time,
    each job taking every chunk that waited. Past L{HIGH_WATER} bytes
    waiting it calls C{pause}, and C{resume} once under L{LOW_WATER}. A
    write that fails (L{StoreFull}: a full disk) is kept in C{error}, and
    later bytes are dropped (the sender is resumed: the rest of its body is
    read and thrown away).
    """

    def __init__(self, staged: IStaged, threads: Threads,
                 pause: Callable[[], object] = lambda: None, resume: Callable[[], object] = lambda: None) -> None:
        self.staged = staged
        self._threads = threads
        self._pause, self._resume = pause, resume
        self._queue: list[bytes] = []
        #: Bytes handed to L{write} and not yet written.
        self.waiting = 0
        self._running = False
        self._paused = False
        #: No more writes: L{finish} or L{abort} was called...
        self._closed = False
        #: ...and with abort, what waits is dropped.
        self._aborted = False
        self._drains: list[Deferred[None]] = []
        self.error: Optional[Failure] = None

    def write(self, data: bytes) -> None:
        if self.error is not None or self._closed or not data:
            return
        self._queue.append(data)
        self.waiting += len(data)
        if not self._running:
            self._next()
        if not self._paused and self.waiting > HIGH_WATER and self.error is None:
            self._paused = True
            self._pause()

    def _next(self) -> None:
        chunks, self._queue = self._queue, []
        size = sum(map(len, chunks))
        self._running = True
        self._threads(_write_all, self.staged, chunks).addCallbacks(
            self._wrote, self._failed, callbackArgs=(size,), errbackArgs=(size,))

    def _wrote(self, _: object, size: int) -> None:
        self._running = False
        self.waiting -= size
        if self._queue and self.error is None and not self._aborted:
            self._next()
        else:
            self._queue, self.waiting = [], 0
            self._drained()
        if self._paused and self.waiting <= LOW_WATER:
            self._paused = False
            self._resume()

    def _failed(self, failure: Failure, size: int) -> None:
        self.error = failure
        self._wrote(None, size)

    def _drained(self) -> None:
        drains, self._drains = self._drains, []
        for d in drains:
            d.callback(None)

    def _idle(self) -> Deferred[None]:
        """Fires once no write is running or waiting."""
        if not self._running:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._drains.append(d)
        return d

    def finish(self) -> Deferred[dict[str, str]]:
        """Once every byte is written: the digests (L{IStaged.finish}), or the write's failure."""
        self._closed = True

        def written(_: None) -> Deferred[dict[str, str]]:
            if self.error is not None:
                return fail(self.error)
            return self._threads(self.staged.finish)

        return self._idle().addCallback(written)

    def abort(self) -> Deferred[None]:
        """Drop what waits, and throw the staged bytes away (after the write that runs, if any)."""
        self._closed = self._aborted = True
        self._queue = []
        if not self._running:
            self.waiting = 0
        return self._idle().addCallback(lambda _: self._threads(self.staged.abort))


def upload_error(failure: Failure) -> Failure:
    """A failure of the staging area as the refusal a client is shown (507 for a full disk)."""
    if failure.check(StoreFull):
        return Failure(no_room(str(failure.value)))
    return failure


class FormReceiver:
    """
    An upload's C{multipart/form-data} body, pushed in chunks as it arrives
    (L{feed}): the C{content} part goes through a L{StagedWriter} into
    C{staged}; the signature (at most L{MAX_SIGNATURE}) and the text fields
    stay in memory. A malformed body is remembered, and the rest of it
    dropped; L{finish} then fails with the L{UploadError} (400, or 507 when
    the store had no room).
    """

    def __init__(self, content_type: bytes, staged: IStaged, threads: Threads,
                 pause: Callable[[], object] = lambda: None, resume: Callable[[], object] = lambda: None,
                 limits: Limits = Limits()) -> None:
        self.staged = staged
        self._threads = threads
        self.writer = StagedWriter(staged, threads, pause, resume)
        self.error: Optional[UploadError] = None
        self._content = False
        self._signature: Optional[BoundedBuffer] = None
        self._done = False
        try:
            self._collector: Optional[FormCollector] = FormCollector(
                boundary_of(content_type), self._open_file, limits)
        except MultipartError as e:
            self._collector = None
            self.error = bad(f"Malformed multipart/form-data body: {e}")

    @property
    def failed(self) -> bool:
        """Whether what is still to come will be thrown away."""
        return self.error is not None or self.writer.error is not None

    def _open_file(self, headers: PartHeaders) -> FileWriter:
        if headers.name == "content":
            if self._content:
                raise MultipartError("Field 'content' was sent more than once.")
            self._content = True
            return self.writer
        if headers.name == "gpg_signature":
            self._signature = BoundedBuffer(MAX_SIGNATURE, "the signature")
            return self._signature
        raise MultipartError(f"{headers.name}: Should not be a tuple.")

    def feed(self, data: bytes) -> None:
        if self.error is not None or self._collector is None:
            return
        try:
            self._collector.feed(data)
        except MultipartError as e:
            self.error = bad(f"Malformed multipart/form-data body: {e}")
            self.writer.abort()

    def finish(self) -> Deferred[Received]:
        """
        The body is all here: a L{Deferred} of the L{Received} form, its
        content finished in the store's staging area (the caller now owns
        it: it publishes or aborts it); or failing with L{UploadError},
        the staged bytes thrown away.
        """
        self._done = True
        form = None
        if self.error is None and self._collector is not None:
            try:
                form = self._collector.close()
            except MultipartError as e:
                self.error = bad(f"Malformed multipart/form-data body: {e}")
        if self.error is not None or form is None:
            error = self.error or bad("Malformed multipart/form-data body.")
            return self.writer.abort().addBoth(lambda _: fail(error))
        signature = self._signature.getvalue() if self._signature is not None else None
        if not self._content:
            # A form without a file (register, remove_pkg): nothing staged.
            return self.writer.abort().addCallback(lambda _: Received(form, None, {}, signature))

        def failed(failure: Failure) -> Deferred[Received]:
            return self.writer.abort().addBoth(lambda _: upload_error(failure))

        return self.writer.finish().addCallbacks(
            lambda digests: Received(form, self.staged, digests, signature), failed)

    def abort(self) -> Deferred[None]:
        """The body will never be whole (the connection went): throw everything away."""
        if self._done:
            return succeed(None)
        self._done = True
        return self.writer.abort()


def receive(body: BinaryIO, content_type: bytes, staged: IStaged, threads: Threads) -> Deferred[Received]:
    """
    A whole body already at hand (C{body}, a binary file): fed to a
    L{FormReceiver} a chunk at a time; its L{FormReceiver.finish}.
    """
    receiver = FormReceiver(content_type, staged, threads)
    body.seek(0)
    while chunk := body.read(256 * 1024):
        receiver.feed(chunk)
    return receiver.finish()
