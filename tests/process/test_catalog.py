"""
The replicas' catalog against a real PostgreSQL (tests/realservers.py): the
schema and its migrations, publishing and removing with the serial, the
unique constraints as arbiters between replicas, LISTEN/NOTIFY between two
replicas (two L{Catalog}s, each with its own connections), catching up
after missed notifications, and PostgreSQL stopped, killed and restarted.
"""

from __future__ import annotations

import hashlib
import time

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.threads import deferToThread

from tests.process.conftest import need_module
from tests.realservers import free_port

need_module("psycopg2", "pip install 'pypid[replicas]'; scripts/test does")

from pypid.store.objectstore import migrations  # noqa: E402
from pypid.store.objectstore.catalog import (  # noqa: E402
    Catalog,
    CatalogConfigError,
    CatalogUnavailable,
    FileExists,
    FileRecord,
    NotOwner,
    describe_url,
)


def record(filename: str, content: bytes = b"", project: str | None = None, version: str | None = None,
           **kwargs) -> FileRecord:
    """A record for C{filename} (project and version split from a C{name-version...} filename)."""
    name, rest = filename.split("-", 1)
    version = version or rest.split("-")[0].removesuffix(".tar.gz").removesuffix(".zip")
    content = content or filename.encode()
    sha256 = hashlib.sha256(content).hexdigest()
    return FileRecord(
        project=project or name.lower().replace("_", "-"), project_name=name, version=version, filename=filename,
        object_key=f"files/{sha256[:2]}/{sha256}/{filename}", size=len(content), sha256=sha256,
        uploaded_at=time.time(), **kwargs,
    )


class Changes:
    """What a follower applied, and a way to wait for a serial."""

    def __init__(self) -> None:
        self.changes = []
        self.calls = 0
        self._waiting: list[tuple[int, defer.Deferred]] = []

    def __call__(self, changes) -> None:
        self.calls += 1
        self.changes.extend(changes)
        last = changes[-1].serial
        for serial, d in list(self._waiting):
            if last >= serial:
                self._waiting.remove((serial, d))
                d.callback(last)

    @property
    def serials(self) -> list[int]:
        return [c.serial for c in self.changes]

    def wait_for(self, serial: int, timeout: float = 10.0) -> defer.Deferred:
        if self.changes and self.changes[-1].serial >= serial:
            return defer.succeed(self.changes[-1].serial)
        d: defer.Deferred = defer.Deferred()
        self._waiting.append((serial, d))
        return d.addTimeout(timeout, reactor)


@pytest.fixture
def catalogs():
    """Make catalogs (replicas); each is stopped at the end."""
    made: list[Catalog] = []
    followers = []

    def make(url: str, **kwargs) -> Catalog:
        catalog = Catalog(url, reactor=reactor, **kwargs)
        made.append(catalog)
        original = catalog.follow

        def follow(*args, **kw):
            follower = original(*args, **kw)
            followers.append(follower)
            return follower

        catalog.follow = follow
        return catalog

    yield make
    for follower in followers:
        follower.stop()
    for catalog in made:
        if catalog._pool.started:
            pytest_twisted.blockon(catalog.stop())


# -- schema -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_an_empty_database_gets_the_schema_once(catalog_url, catalogs):
    first = catalogs(catalog_url)
    assert await first.start() == (0, migrations.LATEST)
    second = catalogs(catalog_url)
    assert await second.start() == (migrations.LATEST, migrations.LATEST)
    assert await second.last_serial() == 0


@pytest_twisted.ensureDeferred
async def test_replicas_starting_together_create_the_schema_once(catalog_url, catalogs):
    results = await defer.gatherResults([catalogs(catalog_url).start() for _ in range(4)])
    latest = migrations.LATEST
    assert sorted(results) == [(0, latest), (latest, latest), (latest, latest), (latest, latest)]


@pytest_twisted.ensureDeferred
async def test_a_schema_newer_than_known_is_refused_with_one_line(catalog_url, catalogs, postgres):
    await catalogs(catalog_url).start()
    postgres.psql("UPDATE pypid_catalog SET schema_version = 99", catalog_url.rsplit("/", 1)[1])
    with pytest.raises(migrations.SchemaTooNew) as caught:
        await catalogs(catalog_url).start()
    assert str(caught.value) == (
        f"the catalog's schema is version 99, newer than this pypid knows (up to {migrations.LATEST}): "
        "upgrade pypid, or point --catalog at another database"
    )
    with pytest.raises(migrations.SchemaTooNew):
        await catalogs(catalog_url).migrate()


@pytest_twisted.ensureDeferred
async def test_an_older_schema_is_migrated_when_asked(catalog_url, catalogs, postgres):
    await catalogs(catalog_url).start()
    known = migrations.LATEST
    newer = migrations.MIGRATIONS + (
        migrations.Migration(known + 1, "a test column", ("ALTER TABLE pypid_files ADD COLUMN test_note text",)),
    )
    with pytest.raises(migrations.SchemaTooOld) as caught:
        await catalogs(catalog_url).start(known=newer)
    assert str(caught.value) == (f"the catalog's schema is version {known}; this pypid needs version {known + 1}: "
                                 "run 'pypid catalog migrate' once the other replicas run this version")
    assert await catalogs(catalog_url).migrate(known=newer) == (known, known + 1)
    database = catalog_url.rsplit("/", 1)[1]
    assert postgres.psql("SELECT count(*) FROM information_schema.columns WHERE column_name = 'test_note'",
                         database).strip() == "1"
    assert await catalogs(catalog_url).start(known=newer) == (known + 1, known + 1)
    # A migration that fails leaves the schema as it was.
    broken = newer + (migrations.Migration(known + 2, "broken", ("ALTER TABLE pypid_files ADD COLUMN x int",
                                                                "ALTER TABLE no_such_table ADD COLUMN y int")),)
    with pytest.raises(Exception):
        await catalogs(catalog_url).migrate(known=broken)
    assert postgres.psql("SELECT schema_version FROM pypid_catalog", database).strip() == str(known + 1)
    # And this pypid refuses the newer version.
    with pytest.raises(migrations.SchemaTooNew):
        await catalogs(catalog_url).start()


@pytest_twisted.ensureDeferred
async def test_a_version_1_schema_migrates_in_place(catalog_url, catalogs, postgres):
    """Version 1 (the first replicas) to this one: rows kept, the change log's new columns added."""
    assert await catalogs(catalog_url).start(known=migrations.MIGRATIONS[:1]) == (0, 1)
    database = catalog_url.rsplit("/", 1)[1]
    postgres.psql("INSERT INTO pypid_changes (serial, at, action, project, version, filename) "
                  "VALUES (1, now(), 'add', 'demo', '1.0', 'demo-1.0.tar.gz')", database)
    with pytest.raises(migrations.SchemaTooOld):
        await catalogs(catalog_url).start()
    assert await catalogs(catalog_url).migrate() == (1, migrations.LATEST)
    assert postgres.psql("SELECT filename, name IS NULL, reason IS NULL, project_removed FROM pypid_changes",
                         database).strip() == "demo-1.0.tar.gz|t|t|f"


# -- files, serials, changes ---------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_publish_snapshot_changes_and_remove(catalog_url, catalogs, postgres):
    catalog = catalogs(catalog_url)
    await catalog.start()
    metadata = b"Metadata-Version: 2.1\nName: Demo\nVersion: 1.0\n" + b"Classifier: X\n" * 200
    a = record("Demo-1.0-py3-none-any.whl", uploader="alice", requires_python=">=3.8", summary="A demo",
               core_metadata_sha256=hashlib.sha256(metadata).hexdigest(), has_signature=True, md5="0" * 32)
    b = record("Demo-1.0.tar.gz", uploader="alice")
    c = record("other_lib-2.0-py3-none-any.whl", uploader="bob", project="other-lib")
    published = [await catalog.publish(r, metadata if r is a else None, actor=r.uploader) for r in (a, b, c)]
    assert [p.serial for p in published] == [1, 2, 3]
    assert published[0].record.id is not None and published[0].record.serial == 1

    snapshot = await catalog.snapshot()
    assert snapshot.serial == 3
    got = {f.filename: f for f in snapshot.files}
    assert got["Demo-1.0-py3-none-any.whl"] == published[0].record
    assert (got["Demo-1.0-py3-none-any.whl"].requires_python, got["Demo-1.0-py3-none-any.whl"].yanked) == \
        (">=3.8", False)
    assert abs(got["Demo-1.0.tar.gz"].uploaded_at - b.uploaded_at) < 0.001

    assert (await catalog.get("DEMO-1.0-PY3-NONE-ANY.WHL")).sha256 == a.sha256
    assert await catalog.get("nothing-1.0.tar.gz") is None
    assert await catalog.core_metadata("demo-1.0-py3-none-any.whl") == metadata
    assert await catalog.core_metadata("Demo-1.0.tar.gz") is None
    stored = int(postgres.psql("SELECT length(core_metadata) FROM pypid_files WHERE core_metadata IS NOT NULL",
                               catalog_url.rsplit("/", 1)[1]))
    assert stored < len(metadata) / 4  # compressed

    removed = await catalog.remove("demo-1.0.TAR.GZ", actor="alice")
    assert (removed.serial, removed.record.filename) == (4, "Demo-1.0.tar.gz")
    assert await catalog.remove("Demo-1.0.tar.gz") is None
    assert await catalog.last_serial() == 4  # a removal of nothing takes no serial

    changes = await catalog.changes_since(0)
    assert [(c.serial, c.action, c.filename, c.actor) for c in changes] == [
        (1, "add", "Demo-1.0-py3-none-any.whl", "alice"),
        (2, "add", "Demo-1.0.tar.gz", "alice"),
        (3, "add", "other_lib-2.0-py3-none-any.whl", "bob"),
        (4, "remove", "Demo-1.0.tar.gz", "alice"),
    ]
    assert changes[0].file == published[0].record
    assert changes[1].file is None  # removed since
    assert changes[3].file is None
    assert [c.serial for c in await catalog.changes_since(2, limit=1)] == [3]


@pytest_twisted.ensureDeferred
async def test_the_same_file_twice_in_any_spelling_is_refused(catalog_url, catalogs):
    catalog = catalogs(catalog_url)
    await catalog.start()
    first = (await catalog.publish(record("Demo-1.0-py2.py3-none-any.whl", b"first"))).record
    variants = [
        record("demo-1.0-py2.py3-none-any.whl", b"second"),   # case of the name
        record("DEMO-1.0-PY2.PY3-NONE-ANY.WHL", b"second"),   # case of everything
        record("demo-1.0.0-py2.py3-none-any.whl", b"second"),  # the same version
        record("demo-1.0-py3.py2-none-any.whl", b"second"),   # the same tag set
        record("De_mo-1.0-py2.py3-none-any.whl", b"second", project="de-mo"),  # not the same project
    ]
    for variant in variants[:4]:
        with pytest.raises(FileExists) as caught:
            await catalog.publish(variant)
        assert caught.value.existing == first
    assert await catalog.last_serial() == 1  # refusals take no serial
    # Other files of the same release are other files.
    for other in (variants[4], record("demo-1.0-cp311-cp311-linux_x86_64.whl"),
                  record("demo-1.0-1-py2.py3-none-any.whl"), record("demo-1.0.tar.gz"), record("demo-1.0.zip")):
        await catalog.publish(other)
    assert await catalog.last_serial() == 6
    # Same bytes again: refused all the same; the caller compares sha256 to answer 200.
    with pytest.raises(FileExists) as caught:
        await catalog.publish(record("Demo-1.0-py2.py3-none-any.whl", b"first"))
    assert caught.value.existing.sha256 == first.sha256


@pytest_twisted.ensureDeferred
async def test_replace_takes_the_place_of_every_spelling(catalog_url, catalogs):
    catalog = catalogs(catalog_url)
    await catalog.start()
    await catalog.publish(record("Demo-1.0.tar.gz", b"old"))
    result = await catalog.publish(record("demo-1.0.tar.gz", b"new"), replace_existing=True, actor="admin")
    assert [r.filename for r in result.replaced] == ["Demo-1.0.tar.gz"]
    assert result.serial == 3
    changes = await catalog.changes_since(1)
    assert [(c.serial, c.action, c.filename) for c in changes] == [(2, "remove", "Demo-1.0.tar.gz"),
                                                                   (3, "add", "demo-1.0.tar.gz")]
    assert [f.sha256 for f in (await catalog.snapshot()).files] == [hashlib.sha256(b"new").hexdigest()]


@pytest_twisted.ensureDeferred
async def test_two_replicas_publishing_the_same_files_at_once(catalog_url, catalogs):
    """
    Replicas A and B each take an upload of the same 40 filenames (other
    bytes, some in another case) at the same moment: exactly one row per
    file, the loser told the winner's row, serials 1..40 without gaps.
    """
    a, b = catalogs(catalog_url), catalogs(catalog_url)
    await a.start()
    await b.start()
    n = 40
    calls = []
    for i in range(n):
        name = f"race{i}-1.0-py3-none-any.whl"
        calls.append(a.publish(record(name, b"A%d" % i)))
        calls.append(b.publish(record(name.upper() if i % 2 else name, b"B%d" % i)))
    results = await defer.DeferredList(calls, consumeErrors=True)
    won = [r for ok, r in results if ok]
    lost = [r.value for ok, r in results if not ok]
    assert len(won) == n and len(lost) == n
    assert all(isinstance(e, FileExists) for e in lost)
    assert sorted(p.serial for p in won) == list(range(1, n + 1))
    winners = {p.record.filename.lower(): p.record.sha256 for p in won}
    for e in lost:
        assert winners[e.existing.filename.lower()] == e.existing.sha256
    snapshot = await a.snapshot()
    assert len(snapshot.files) == n and snapshot.serial == n


@pytest_twisted.ensureDeferred
async def test_first_uploader_is_claimed_once(catalog_url, catalogs):
    a, b = catalogs(catalog_url), catalogs(catalog_url)
    await a.start()
    await b.start()
    results = await defer.DeferredList([
        a.publish(record("newproj-1.0.tar.gz", b"alice"), owner_claim="alice"),
        b.publish(record("newproj-1.0-py3-none-any.whl", b"bob"), owner_claim="bob"),
    ], consumeErrors=True)
    (ok_a, res_a), (ok_b, res_b) = results
    assert ok_a != ok_b
    loser = res_b.value if ok_a else res_a.value
    assert isinstance(loser, NotOwner)
    owner = "alice" if ok_a else "bob"
    assert loser.owner == owner
    assert await a.owners() == {"newproj": owner}
    # The owner goes on uploading; the claim of another stays refused.
    await a.publish(record("newproj-2.0.tar.gz"), owner_claim=owner)
    with pytest.raises(NotOwner):
        await b.publish(record("newproj-3.0.tar.gz"), owner_claim="mallory")
    assert await a.last_serial() == 2


# -- changes reaching replicas ---------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_change_reaches_every_replica_at_once(catalog_url, catalogs):
    a, b, c = catalogs(catalog_url), catalogs(catalog_url), catalogs(catalog_url)
    for catalog in (a, b, c):
        await catalog.start()
    seen_b, seen_c = Changes(), Changes()
    fb, fc = b.follow(0, seen_b), c.follow(0, seen_c)
    await fb.when_caught_up()
    await fc.when_caught_up()
    latencies = []
    for i in range(20):
        started = time.monotonic()
        published = await a.publish(record(f"fast{i}-1.0.tar.gz"))
        await defer.gatherResults([seen_b.wait_for(published.serial, 2), seen_c.wait_for(published.serial, 2)])
        latencies.append(time.monotonic() - started)
    assert seen_b.serials == seen_c.serials == list(range(1, 21))
    assert [c.file.filename for c in seen_b.changes] == [f"fast{i}-1.0.tar.gz" for i in range(20)]
    latencies.sort()
    print(f"publish-to-applied on two other replicas: median {latencies[10] * 1000:.1f} ms, "
          f"max {latencies[-1] * 1000:.1f} ms")
    assert latencies[-1] < 1.0
    assert a.health.ok and b.health.ok


@pytest_twisted.ensureDeferred
async def test_a_follower_starting_late_catches_up_exactly(catalog_url, catalogs):
    a, b = catalogs(catalog_url), catalogs(catalog_url)
    await a.start()
    await b.start()
    for i in range(5):
        await a.publish(record(f"early{i}-1.0.tar.gz"))
    await a.remove("early1-1.0.tar.gz")
    seen = Changes()
    follower = b.follow(3, seen)  # a replica that had applied up to 3 before it stopped
    await follower.when_caught_up()
    assert seen.serials == [4, 5, 6]
    assert [(c.action, c.filename) for c in seen.changes] == [
        ("add", "early3-1.0.tar.gz"), ("add", "early4-1.0.tar.gz"), ("remove", "early1-1.0.tar.gz")]


@pytest_twisted.ensureDeferred
async def test_changes_whose_notification_was_missed_come_with_the_next(catalog_url, catalogs, postgres):
    a, b = catalogs(catalog_url), catalogs(catalog_url)
    await a.start()
    await b.start()
    seen = Changes()
    follower = b.follow(0, seen)
    await follower.when_caught_up()
    await a.publish(record("one-1.0.tar.gz"))
    await seen.wait_for(1)
    # A change committed without its NOTIFY (as if the notification were lost).
    database = catalog_url.rsplit("/", 1)[1]
    postgres.psql(
        "BEGIN; UPDATE pypid_catalog SET last_serial = last_serial + 1; "
        "INSERT INTO pypid_changes (serial, at, action, project, version, filename) "
        "SELECT last_serial, now(), 'remove', 'one', '1.0', 'one-1.0.tar.gz' FROM pypid_catalog; "
        "DELETE FROM pypid_files WHERE filename = 'one-1.0.tar.gz'; COMMIT", database)
    await task.deferLater(reactor, 0.3, lambda: None)
    assert seen.serials == [1]  # nothing told it
    await a.publish(record("three-1.0.tar.gz"))
    await seen.wait_for(3)
    assert seen.serials == [1, 2, 3]
    assert [c.action for c in seen.changes] == ["add", "remove", "add"]


# -- PostgreSQL going away -----------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_postgres_stopped_and_restarted(own_postgres, catalogs):
    cluster = own_postgres
    url = cluster.url(cluster.create_database())
    a, b = catalogs(url), catalogs(url)
    await a.start()
    await b.start()
    seen = Changes()
    # A long first retry delay, so that A publishes before B is back.
    follower = b.follow(0, seen, min_delay=1.5, max_delay=1.5)
    await follower.when_caught_up()
    await a.publish(record("before-1.0.tar.gz"))
    await seen.wait_for(1)

    await deferToThread(cluster.stop)
    await task.deferLater(reactor, 0.3, lambda: None)
    assert not b.health.ok
    assert b.health.reason.startswith("listen: ")
    with pytest.raises(CatalogUnavailable) as caught:
        await a.publish(record("during-1.0.tar.gz"))
    assert str(caught.value).startswith(f"cannot connect to the catalog at {describe_url(url)}: ")
    with pytest.raises(CatalogUnavailable):
        await a.snapshot()
    assert not a.health.ok

    await deferToThread(cluster.start)
    # A writes while B is still waiting to reconnect: B catches up on it.
    published = await a.publish(record("after-1.0.tar.gz"))
    assert published.serial == 2
    assert a.health.ok
    assert seen.serials == [1]
    await seen.wait_for(2, timeout=15)
    await follower.when_caught_up()
    assert seen.serials == [1, 2]
    assert follower.connections == 2
    assert b.health.ok
    # B's own pooled connections work again too.
    assert (await b.snapshot()).serial == 2
    await a.publish(record("later-1.0.tar.gz"))
    await seen.wait_for(3)


@pytest_twisted.ensureDeferred
async def test_postgres_killed_and_restarted(own_postgres, catalogs):
    cluster = own_postgres
    url = cluster.url(cluster.create_database())
    a, b = catalogs(url), catalogs(url)
    await a.start()
    await b.start()
    seen = Changes()
    follower = b.follow(0, seen, min_delay=0.1, max_delay=0.5)
    await follower.when_caught_up()
    await a.publish(record("before-1.0.tar.gz"))
    await seen.wait_for(1)
    await deferToThread(cluster.kill)
    await task.deferLater(reactor, 0.5, lambda: None)
    assert not b.health.ok
    await deferToThread(cluster.start)
    await follower.when_caught_up()
    # Reads through pooled connections opened before the crash work at once.
    assert (await a.snapshot()).serial == 1
    await a.publish(record("after-1.0.tar.gz"))
    await seen.wait_for(2)
    assert seen.serials == [1, 2] and b.health.ok


# -- bad configuration ---------------------------------------------------------


def test_a_url_that_is_not_a_libpq_url_is_refused(catalog_url):
    with pytest.raises(CatalogConfigError) as caught:
        Catalog("mysql://pypid@127.0.0.1/x", reactor=reactor)
    assert str(caught.value) == "--catalog must be a libpq URL, postgresql://USER@HOST:PORT/DATABASE"
    with pytest.raises(CatalogConfigError) as caught:
        Catalog("postgresql://pypid:s3cret@127.0.0.1/x?nonsense=1", reactor=reactor)
    assert "s3cret" not in str(caught.value)
    assert str(caught.value) == "--catalog postgresql://? is not a valid libpq URL"


@pytest_twisted.ensureDeferred
async def test_unreachable_unknown_and_refused_catalogs_are_one_line(postgres, catalog_url, catalogs, monkeypatch,
                                                                  tmp_path):
    port = free_port()
    nowhere = f"postgresql://pypid@127.0.0.1:{port}/x"
    with pytest.raises(CatalogUnavailable) as caught:
        await catalogs(nowhere).start()
    assert str(caught.value) == (f"cannot connect to the catalog at postgresql://pypid@127.0.0.1:{port}/x: "
                                 f'connection to server at "127.0.0.1", port {port} failed: Connection refused')

    missing = postgres.url("no_such_database")
    with pytest.raises(CatalogUnavailable) as caught:
        await catalogs(missing).start()
    assert str(caught.value).endswith('FATAL:  database "no_such_database" does not exist')

    wrong = tmp_path / "pgpass"
    wrong.write_text(f"127.0.0.1:{postgres.port}:*:pypid:not-the-password\n")
    wrong.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(wrong))
    with pytest.raises(CatalogUnavailable) as caught:
        await catalogs(catalog_url).start()
    assert str(caught.value).endswith('password authentication failed for user "pypid"')
    assert "not-the-password" not in str(caught.value)

    # A password in the URL works, and is named nowhere.
    inline = catalog_url.replace("pypid@", f"pypid:{postgres.password}@")
    catalog = catalogs(inline)
    assert catalog.where == catalog_url.replace("127.0.0.1", "127.0.0.1")
    assert postgres.password not in catalog.where
    await catalog.start()
    wrong_inline = catalog_url.replace("pypid@", "pypid:wrong-inline-password@")
    with pytest.raises(CatalogUnavailable) as caught:
        await catalogs(wrong_inline).start()
    assert "wrong-inline-password" not in str(caught.value)


def test_a_process_whose_reactor_stops_does_not_wait_for_the_pool(catalog_url, tmp_path):
    """The catalog's threads are no daemons: the pool stops with the reactor, stop() called or not."""
    import os
    import subprocess
    import sys

    from tests.server import ROOT

    script = tmp_path / "forgetful.py"
    script.write_text(
        "import sys\n"
        "from twisted.internet import task\n"
        "from pypid.store.objectstore.catalog import Catalog\n"
        "async def main(reactor):\n"
        "    catalog = Catalog(sys.argv[1], reactor=reactor)\n"
        "    await catalog.start()\n"
        "    print('serial', await catalog.last_serial())\n"
        "task.react(lambda reactor: __import__('twisted.internet.defer', fromlist=['x']).ensureDeferred(main(reactor)))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, str(script), catalog_url], capture_output=True, text=True, env=env,
                            timeout=60)
    assert (result.returncode, result.stdout) == (0, "serial 0\n"), result.stderr
