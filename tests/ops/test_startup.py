"""What a start that cannot go on says: one line each."""

from __future__ import annotations

import errno
import os
import socket

from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial.unittest import SynchronousTestCase

from pypid.feed.options import SpoolService
from pypid.ops.startup import Listener, StartError, listen_error


def refused(interface, port, code):
    return CannotListenError(interface, port, socket.error(code, os.strerror(code)))


class ListenErrorTests(SynchronousTestCase):
    def test_messages(self):
        self.assertEqual(listen_error("--port", refused("", 3141, errno.EADDRINUSE)),
                         "cannot listen on port 3141: address already in use (another pypid?)")
        self.assertEqual(listen_error("--port", refused("127.0.0.1", 80, errno.EACCES)),
                         "cannot listen on 127.0.0.1:80: permission denied "
                         "(ports below 1024 need root or CAP_NET_BIND_SERVICE)")
        self.assertEqual(listen_error("--ftp", refused("10.9.9.9", 2121, errno.EADDRNOTAVAIL)),
                         "cannot listen on 10.9.9.9:2121 (--ftp): no such address on this host")
        self.assertEqual(listen_error("--port", refused(None, "/run/pypid.sock", errno.ENOENT)),
                         "cannot listen on /run/pypid.sock: No such file or directory")


class ListenerTests(SynchronousTestCase):
    def test_failure_is_a_start_error(self):
        class Refusing(MemoryReactor):
            def listenTCP(self, port, factory, backlog=50, interface=""):
                raise refused(interface, port, errno.EADDRINUSE)

        listener = Listener(TCP4ServerEndpoint(Refusing(), 3141), object())
        e = self.assertRaises(StartError, listener.privilegedStartService)
        self.assertEqual(str(e), "cannot listen on port 3141: address already in use (another pypid?)")

    def test_listens_once_and_stops(self):
        reactor = MemoryReactor()
        listener = Listener(TCP4ServerEndpoint(reactor, 3141, interface="127.0.0.1"), object())
        listener.privilegedStartService()
        listener.startService()
        self.assertEqual(len(reactor.tcpServers), 1)
        self.assertIsNotNone(listener.port)
        listener.stopService()
        self.assertIsNone(listener.port)


class SpoolTests(SynchronousTestCase):
    def test_leftovers_removed_and_told(self):
        """What a crash left in the spool goes at start, with how much it was; then the spool itself."""
        from twisted.logger import formatEvent, globalLogPublisher

        root = os.path.abspath(self.mktemp())
        spool = os.path.join(root, ".pypid-incoming")
        os.makedirs(spool)
        with open(os.path.join(spool, ".upload-abc.part"), "wb") as f:
            f.write(b"x" * 2 * 1048576)
        lines: list[str] = []
        globalLogPublisher.addObserver(lines.append)
        self.addCleanup(globalLogPublisher.removeObserver, lines.append)
        SpoolService(spool).startService()
        self.assertFalse(os.path.exists(spool))
        texts = [formatEvent(e) for e in lines]
        self.assertIn(f"removed 1 leftover upload file of uploads cut short by a crash from {spool} "
                      f"(2.0 MiB freed)", texts)
        # Nothing to clean: nothing said, nothing made.
        del lines[:]
        SpoolService(spool).startService()
        self.assertEqual([formatEvent(e) for e in lines], [])
        self.assertFalse(os.path.exists(spool))
