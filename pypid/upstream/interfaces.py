"""The interface between the upstream fallback and an upstream index."""

from __future__ import annotations

from zope.interface import Interface


class IUpstream(Interface):
    """
    An upstream index's HTTP side, as the fallback needs it: treq in the
    daemon, canned answers in tests. Methods are called on the reactor
    thread and return L{Deferred}s.
    """

    def fetchPage(url, headers, limit=None):
        """
        GET a simple API page with the extra request C{headers} (a dict of
        str; conditional headers among them). Fires with a
        L{pypid.upstream.client.PageResponse}; fails when the upstream
        cannot be reached, times out or cuts the body off. With C{limit},
        only the first C{limit} bytes of the body are read (the response
        then says C{truncated}).
        """

    def head(url):
        """
        HEAD a file: fires with a L{pypid.upstream.client.Head} (its status,
        length and whether it takes ranges); fails like L{fetchPage}.
        """

    def fetchRange(url, first, last):
        """
        GET bytes C{first} to C{last} (inclusive) of a file: fires with a
        L{pypid.upstream.client.RangeResponse}: 206 with the bytes and the
        file's size; 200 (nothing read) when the upstream does not take
        ranges; 416 past the end; another status as it came. Fails like
        L{download}.
        """

    def download(url, write):
        """
        GET a file and pass its body to C{write(bytes)} chunk by chunk.
        Fires with a L{pypid.upstream.client.Download} once the body is
        complete; fails with L{pypid.upstream.client.DownloadError} on a
        status other than 200, a timeout or a cut-off body, or with the
        exception C{write} raised.
        """
