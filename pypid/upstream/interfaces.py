"""The interface between the upstream fallback and an upstream index."""

from __future__ import annotations

from zope.interface import Interface


class IUpstream(Interface):
    """
    An upstream index's HTTP side, as the fallback needs it: treq in the
    daemon, canned answers in tests. Methods are called on the reactor
    thread and return L{Deferred}s.
    """

    def fetchPage(url, headers):
        """
        GET a simple API page with the extra request C{headers} (a dict of
        str; conditional headers among them). Fires with a
        L{pypid.upstream.client.PageResponse}; fails when the upstream
        cannot be reached, times out or cuts the body off.
        """

    def download(url, write):
        """
        GET a file and pass its body to C{write(bytes)} chunk by chunk.
        Fires with a L{pypid.upstream.client.Download} once the body is
        complete; fails with L{pypid.upstream.client.DownloadError} on a
        status other than 200, a timeout or a cut-off body, or with the
        exception C{write} raised.
        """
