from twisted.trial.unittest import SynchronousTestCase

from pypid.index.changes import ADD, REMOVE, REMOVE_PROJECT, Change, ChangeLog, ChangesSince, file_changes, since
from pypid.index.model import IndexSnapshot
from tests.index.test_model import dist


class FileChangesTests(SynchronousTestCase):
    def test_adds_removals_and_rewrites(self):
        old = IndexSnapshot.build([dist("foo-1.0.whl"), dist("foo-2.0.whl", version="2.0"),
                                   dist("bar-1.whl", project="bar", name="Bar", version="1")])
        new, changed = old.apply([dist("foo-3.0.whl", version="3.0"), dist("foo-2.0.whl", version="2.0", size=99)],
                                 ["foo-1.0.whl", "bar-1.whl"])
        self.assertEqual(file_changes(old, new, changed, 100.0), [
            Change(2, 100.0, REMOVE, "bar", "Bar", "1", "bar-1.whl"),
            Change(2, 100.0, REMOVE_PROJECT, "bar", "Bar"),
            Change(2, 100.0, REMOVE, "foo", "foo", "1.0", "foo-1.0.whl"),
            Change(2, 100.0, ADD, "foo", "foo", "2.0", "foo-2.0.whl"),
            Change(2, 100.0, ADD, "foo", "foo", "3.0", "foo-3.0.whl"),
        ])


def change(serial, project="foo"):
    return Change(serial, 0.0, ADD, project, project, "1", f"{project}-{serial}.whl")


class ChangeLogTests(SynchronousTestCase):
    def test_since(self):
        log = ChangeLog(limit=100, horizon=3)
        log.record([change(4), change(5, "bar"), change(5), change(7)])
        self.assertEqual(log.since(4, last=7), ChangesSince((change(5, "bar"), change(5), change(7)), True))
        self.assertEqual(log.since(7, last=7), ChangesSince((), True))
        self.assertEqual(log.since(3, last=7).complete, True)

    def test_beyond_the_horizon_is_incomplete(self):
        """Older than what the log holds, or newer than the index (a log that was lost): not complete."""
        log = ChangeLog(limit=100, horizon=3)
        log.record([change(4)])
        self.assertEqual(log.since(2, last=4), ChangesSince((change(4),), False))
        self.assertEqual(log.since(9, last=4), ChangesSince((), False))

    def test_bounded(self):
        log = ChangeLog(limit=3)
        log.record([change(1), change(2), change(2, "bar"), change(3), change(4)])
        self.assertEqual(len(log), 3)
        self.assertEqual(log.horizon, 2)
        self.assertEqual(log.since(2, last=4), ChangesSince((change(3), change(4)), True))
        self.assertFalse(log.since(1, last=4).complete, "one change of serial 2 is gone")

    def test_since_function_matches_the_log(self):
        changes = [change(1), change(2), change(3)]
        self.assertEqual(since(changes, 1, horizon=0, last=3), ChangesSince(tuple(changes[1:]), True))
