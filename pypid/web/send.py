"""
Answers written a chunk at a time, so that a client that reads nothing
holds one chunk of pypid's memory, not the whole answer.

Twisted joins a response's pending writes into one buffer per connection:
a cached page written whole is copied for every connection that has not
taken it yet, and a stalled reader keeps its copy. L{one_chunk_in_flight}
sets the connection's buffer limit to 0 while an answer is streamed, so
its producer is paused after every chunk and resumed once the kernel has
taken it; L{bytes_sender} streams a body from memory that way
(L{pypid.web.files.FileSender} streams files).
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

#: Bytes of a file written at a time, and all a download hands the
#: connection before the kernel has taken them: what a client that reads
#: nothing holds.
CHUNK = 48 * 1024

#: Bodies from memory (pages) up to this size are written whole; longer
#: ones this much at a time. Twisted sends at most 128 KiB per reactor turn
#: (SEND_LIMIT), so chunks of that size cost no extra turn; a stalled
#: reader of a page holds at most this much.
PAGE_CHUNK = 128 * 1024

_log = Logger()


def one_chunk_in_flight(request) -> Callable[[], None]:
    """
    Pause C{request}'s producer after every write until the returned
    function is called (when the answer is sent or the connection gone).
    """
    # The socket's transport (below TLS, if any) decides when to pause.
    transport = getattr(getattr(request, "channel", None), "transport", None)
    while transport is not None and not hasattr(transport, "bufferSize"):
        transport = getattr(transport, "transport", None)
    if transport is None:
        return lambda: None
    limit = transport.bufferSize
    transport.bufferSize = 0

    def restore() -> None:
        transport.bufferSize = limit

    return restore


@implementer(IPushProducer)
class ChunkSender:
    """
    Streams the chunks of C{chunks} (an iterator of bytes, made as they are
    asked for: a listing rendered as it goes out) into C{request}, one at a
    time as the connection takes them, then finishes it. Each chunk is
    made when the connection can take it, so a long answer costs the
    reactor one chunk's work per turn, and a client that reads nothing
    holds one chunk and the iterator.
    """

    def __init__(self, request, chunks: Iterator[bytes]) -> None:
        self.request = request
        self.chunks: Optional[Iterator[bytes]] = chunks
        self.paused = False
        self._writing = False
        self._restore: Callable[[], None] = lambda: None

    def start(self) -> None:
        self._restore = one_chunk_in_flight(self.request)
        self.request.notifyFinish().addErrback(lambda _: self.stopProducing())
        self.request.registerProducer(self, True)
        self.resumeProducing()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        if self._writing or self.chunks is None:
            return
        self._writing = True
        finished = False
        try:
            while not self.paused and self.chunks is not None:
                chunk = next(self.chunks, None)
                if chunk is None:
                    finished = True
                    break
                if chunk:
                    self.request.write(chunk)
        except Exception:
            # Half an answer is out: the client must see it cut off.
            _log.failure("streaming the answer to {uri} failed", uri=getattr(self.request, "uri", None))
            self._stop()
            self.request.unregisterProducer()
            self.request.loseConnection()
            return
        finally:
            self._writing = False
        if finished and self.chunks is not None:
            self._stop()
            self.request.unregisterProducer()
            self.request.finish()

    def stopProducing(self) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.chunks is not None:
            self.chunks = None
            self._restore()


def bytes_sender(request, body: bytes) -> ChunkSender:
    """Streams C{body} into C{request} one L{PAGE_CHUNK} at a time, then finishes it."""
    return ChunkSender(request, (body[i:i + PAGE_CHUNK] for i in range(0, len(body), PAGE_CHUNK)))
