"""
The store seam: what the index and the web ask of wherever the distribution
files live. It speaks files, never paths: a backend opens a file as an
L{IBody} for a response, and tells subscribers about every change to its
snapshot.

Backends: L{pypid.store.directory.store.DirectoryStore} (the package
directories; scanning, watching and the state cache are its own business)
and L{pypid.store.memory.MemoryStore} (bytes in memory, for tests).
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IBody(Interface):
    """
    A stored file opened for one response. Whoever gets a body closes it,
    or hands it to L{stream}, which does.
    """

    size = Attribute("The file's size in bytes, as opened.")
    mtime_ns = Attribute("Its modification time, in nanoseconds.")
    redirect = Attribute(
        "L{None}, or an absolute URL that serves the same bytes (a backend"
        " that would rather the client fetched them from there)."
    )

    def read(offset, count):
        """
        Up to C{count} bytes from C{offset}, for answers small enough to hold
        in memory: the bytes, or a L{Deferred} firing with them. Fewer bytes
        than asked for mean the file shrank: the answer must not be sent.
        """

    def stream(request, offset, count):
        """
        Write C{count} bytes from C{offset} into the request (a
        L{twisted.web.server.Request}) as fast as its connection takes them,
        with flow control, then finish it; drop the connection if the file
        turns out shorter. Takes the body over: it is closed when the
        request ends, however it ends.
        """

    def close():
        """Let the file go (again: nothing)."""


class IPackageStore(Interface):
    """
    Where the index comes from. Every method is called on the reactor
    thread, and none blocks it.
    """

    snapshot = Attribute(
        "The current L{pypid.index.model.IndexSnapshot}; replaced, never mutated."
    )
    ready = Attribute("True once the first complete snapshot is in place.")
    hash_algo = Attribute("The hash algorithm of file digests, or None when off.")

    def whenReady():
        """
        A L{Deferred} that fires (with L{None}) once the first complete
        snapshot is in place; fires at once when it already is.
        """

    def subscribe(callback):
        """
        Call C{callback(snapshot, changed)} after every change, where
        C{changed} is the frozenset of project keys whose listing changed.
        """

    def open(distfile, sidecar=""):
        """
        Open C{distfile} (a L{pypid.index.model.DistFile} of the snapshot),
        or its sidecar C{<path><sidecar>} (C{".asc"}), for one response: an
        L{IBody}, or L{None} when there is no such file that may be served.
        Cheap: called on the reactor thread for every download.
        """

    def readMetadata(distfile):
        """
        A L{Deferred} firing with the bytes of C{distfile}'s core metadata
        file, or failing with L{pypid.store.metadata.MetadataError}.
        """
