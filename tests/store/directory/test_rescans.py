"""The index service: the first scan, and the collector resting meanwhile."""

import gc

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pypid.store.directory.rescans import IndexService


class FakeStore:
    def __init__(self):
        self.scans: list[Deferred] = []

    def rescan(self) -> Deferred:
        d: Deferred = Deferred()
        self.scans.append(d)
        return d


class FirstScanTests(SynchronousTestCase):
    def setUp(self):
        self.addCleanup(gc.enable if gc.isenabled() else gc.disable)
        gc.enable()
        self.store = FakeStore()
        self.service = IndexService(self.store, Clock(), None)

    def test_collector_rests_during_the_first_scan(self):
        """The cyclic collector is off while the first scan runs, and on again once it is over."""
        self.service.startService()
        self.assertEqual(len(self.store.scans), 1)
        self.assertFalse(gc.isenabled())
        self.store.scans[0].callback(None)
        self.assertTrue(gc.isenabled())

    def test_collector_back_after_a_failed_scan(self):
        """A failed first scan turns the collector on again, and the failure goes on to the caller."""
        self.service.startService()
        self.store.scans[0].errback(OSError("disk on fire"))
        self.assertTrue(gc.isenabled())
        self.failureResultOf(self.store.scans[0], OSError)

    def test_collector_left_off(self):
        """When something else turned the collector off, the first scan leaves it off."""
        gc.disable()
        self.service.startService()
        self.store.scans[0].callback(None)
        self.assertFalse(gc.isenabled())

    def test_later_scans_leave_the_collector_alone(self):
        """Periodic rescans do not touch the collector."""
        clock = Clock()
        service = IndexService(self.store, clock, 10)
        service.startService()
        self.store.scans[0].callback(None)
        clock.advance(10)
        self.assertEqual(len(self.store.scans), 2)
        self.assertTrue(gc.isenabled())
        self.store.scans[1].callback(None)
        service.stopService()
