"""Interfaces between pypid's parts."""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IPackageStore(Interface):
    """
    Where the index comes from: the package directories, or a memory store
    in tests. All methods are called on the reactor thread.
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

    def rescan():
        """
        Bring the snapshot in step with the storage. Returns a L{Deferred}
        that fires when the resulting snapshot is in place.
        """

    def refresh(abspaths):
        """
        Re-read just the given absolute paths (files or directories, present
        or gone) and apply what changed. Returns a L{Deferred} that fires
        when the resulting snapshot is in place.
        """

    def localPath(distfile):
        """
        The filesystem path to serve C{distfile} from, or L{None} when it may
        not be served (gone, or resolved outside its package directory).
        Cheap: may be called on the reactor thread.
        """

    def openFile(distfile, suffix=""):
        """
        Open C{distfile}, or its sidecar C{<path><suffix>} (C{".asc"}), for
        reading, under the same guard as L{localPath}: a tuple of a file
        descriptor (the caller closes it) and its C{os.fstat}, or L{None}
        when there is no regular file there that may be served. Cheap:
        called on the reactor thread for every download.
        """

    def readMetadata(distfile):
        """
        A L{Deferred} firing with the bytes of C{distfile}'s core metadata
        file, or failing with L{pypid.store.metadata.MetadataError}.
        """
