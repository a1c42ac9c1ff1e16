"""
Replicas on the command line: C{--store s3://BUCKET/PREFIX},
C{--s3-endpoint}, C{--s3-region}, C{--s3-redirect} and C{--catalog}; and
the object store backend built from them, with the service that checks
its two engines and starts it.

Nothing of the C{replicas} extra (botocore, psycopg2) is imported unless
C{--store} is given: C{twistd pypid DIR} never needs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from pypid.store.directory.options import DirectoryConfig

if TYPE_CHECKING:
    from pypid.store.objectstore.s3 import S3Location
    from pypid.store.objectstore.store import ObjectStore
    from pypid.threads import Threads

#: What to install for C{--store}, said when it is missing.
EXTRA = ("--store needs the replicas extra: pip install 'pypid[replicas]' "
         "(Debian: apt install python3-botocore python3-psycopg2)")

#: Seconds a presigned download URL is valid (C{--s3-redirect}).
PRESIGN_SECONDS = 300


@dataclass(frozen=True)
class ObjectStoreConfig:
    """Where the files and the catalog are, checked (no connection made yet)."""

    #: C{--store}, as given.
    store: str
    endpoint: Optional[str]
    region: Optional[str]
    #: C{--s3-redirect}: downloads answered with a presigned URL.
    redirect: bool
    #: C{--catalog}, a libpq URL (its password, if any, is never shown).
    catalog: str
    #: A local directory for uploads on their way in and the upstream cache
    #: (C{--state-dir}; default C{~/.cache/pypid}).
    work_dir: str

    @property
    def directory(self) -> DirectoryConfig:
        """What the other options read of 'the package directory': the local work directory."""
        return DirectoryConfig(roots=(self.work_dir,), hash_algo="sha256", rescan_interval=0, watch=False,
                               state_dir=os.path.join(self.work_dir, ".pypid"))


def require_extra() -> None:
    """Refuse, in one line, when botocore or psycopg2 is missing."""
    try:
        import botocore  # noqa: F401
        import psycopg2  # noqa: F401
    except ImportError:
        raise usage.UsageError(EXTRA) from None


def check_engines(store: str, endpoint: Optional[str], region: Optional[str], catalog: str) -> S3Location:
    """
    The S3 location and the catalog URL, checked as text (no connection):
    L{usage.UsageError} in one line. Needs the extra.
    """
    from pypid.store.objectstore.catalog import CatalogConfigError, check_url
    from pypid.store.objectstore.s3 import S3ConfigError, S3Location

    try:
        location = S3Location.from_options(store, endpoint, region)
    except S3ConfigError as e:
        raise usage.UsageError(str(e)) from None
    try:
        check_url(catalog)
    except CatalogConfigError as e:
        raise usage.UsageError(str(e)) from None
    return location


class ObjectStoreOptions(usage.Options):
    """Mixed into L{pypid.tap.Options}; L{check_objectstore} in postOptions."""

    optParameters = [
        ["store", None, None,
         "Keep the files in an S3-compatible object store, s3://BUCKET/PREFIX, instead of package "
         "directories, listed by the --catalog that every replica shares (see docs/replicas.md)."],
        ["s3-endpoint", None, None,
         "URL of the S3-compatible store (SeaweedFS, MinIO, Ceph RGW, R2, ...); default: AWS S3. "
         "Credentials come from botocore's chain (AWS_ACCESS_KEY_ID, ~/.aws/credentials, an instance role)."],
        ["s3-region", None, None,
         "Region of the bucket (default: botocore's configuration, else us-east-1)."],
        ["catalog", None, None,
         "The catalog of the --store replicas: a PostgreSQL libpq URL, postgresql://USER@HOST:PORT/DATABASE "
         "(the password from PGPASSFILE or PGPASSWORD)."],
    ]
    optFlags = [
        ["s3-redirect", None,
         "Answer downloads from the --store with a 307 to a short-lived presigned URL of the object "
         "(for networks where clients reach the store)."],
    ]

    def check_objectstore(self) -> Optional[ObjectStoreConfig]:
        """L{None} without C{--store}; else the checked replicas options."""
        store = self["store"]
        if store is None:
            for name in ("s3-endpoint", "s3-region", "catalog"):
                if self[name] is not None:
                    raise usage.UsageError(f"--{name} goes with --store s3://BUCKET/PREFIX.")
            if self["s3-redirect"]:
                raise usage.UsageError("--s3-redirect goes with --store s3://BUCKET/PREFIX.")
            return None
        if self["packages"]:
            raise usage.UsageError(
                "--store keeps the files in the object store: give no package directory "
                f"({self['packages'][0]!r}); put them in with 'pypid store import DIR'.")
        if self["catalog"] is None:
            raise usage.UsageError(
                "--store needs --catalog postgresql://USER@HOST:PORT/DATABASE: the catalog lists the files.")
        algo = (self["hash-algo"] or "").strip().lower()
        if algo != "sha256":
            raise usage.UsageError("--store lists sha256 digests: leave --hash-algo at sha256.")
        require_extra()
        check_engines(store, self["s3-endpoint"], self["s3-region"], self["catalog"])
        work_dir = os.path.abspath(os.path.expanduser(self["state-dir"] or "~/.cache/pypid"))
        try:
            os.makedirs(work_dir, exist_ok=True)
        except OSError as e:
            raise usage.UsageError(f"cannot create the local work directory {work_dir!r} (--state-dir): "
                                   f"{e.strerror}") from None
        return ObjectStoreConfig(store=store, endpoint=self["s3-endpoint"], region=self["s3-region"],
                                 redirect=bool(self["s3-redirect"]), catalog=self["catalog"], work_dir=work_dir)


class ObjectStoreParts(NamedTuple):
    store: "ObjectStore"
    service: "ObjectStoreService"


def build(config: ObjectStoreConfig, reactor: Any, threads: Threads) -> ObjectStoreParts:
    """The object store backend and the service that starts it; nothing connects before it starts."""
    from pypid.store.objectstore.catalog import Catalog
    from pypid.store.objectstore.store import ObjectStore

    catalog = Catalog(config.catalog, reactor=reactor)
    store = ObjectStore(None, catalog, threads, config.work_dir, reactor, redirect=config.redirect,
                        presign_seconds=PRESIGN_SECONDS)
    return ObjectStoreParts(store, ObjectStoreService(config, store, reactor, threads))


def check_catalog_blocking(url: str, create: bool = True) -> tuple[int, int]:
    """
    Connect to the catalog and check its schema (creating it in an empty
    database): the schema versions before and after, or L{StartError} in
    one line. Blocking: before the reactor runs.
    """
    import psycopg2

    from pypid.ops.startup import StartError
    from pypid.store.objectstore import migrations
    from pypid.store.objectstore.catalog import _first_line, describe_url

    where = describe_url(url)
    try:
        connection = psycopg2.connect(url, connect_timeout=10, application_name="pypid")
    except psycopg2.Error as e:
        raise StartError(f"cannot connect to the catalog at {where}: {_first_line(e)}") from None
    try:
        with connection.cursor() as cursor:
            versions: tuple[int, int] = migrations.check(cursor, create)
        connection.commit()
        return versions
    except migrations.SchemaError as e:
        raise StartError(f"catalog {where}: {e}") from None
    except psycopg2.Error as e:
        raise StartError(f"catalog {where}: {_first_line(e)}") from None
    finally:
        connection.close()


class ObjectStoreService(Service):
    """
    Starts the object store backend: when the service starts (before the
    reactor runs, so blocking is fine) it checks the bucket and the
    catalog, refusing the start in one line when either is unusable
    (unknown bucket, wrong credentials, unreachable endpoint or catalog, a
    schema this pypid does not know); once the reactor runs, the store
    loads its snapshot from the catalog and follows it.
    """

    log = Logger()

    def __init__(self, config: ObjectStoreConfig, store: "ObjectStore", reactor: Any, threads: Threads) -> None:
        self.config = config
        self.store = store
        self.reactor = reactor
        self.threads = threads

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # Twisted's Service is unannotated
        from pypid.ops.startup import StartError
        from pypid.store.objectstore.s3 import CredentialSource, S3Client, S3Error, check_blocking

        location = check_engines(self.config.store, self.config.endpoint, self.config.region, self.config.catalog)
        try:
            location, credentials, frozen = check_blocking(location)
        except S3Error as e:
            raise StartError(f"object store: {e}") from None
        check_catalog_blocking(self.config.catalog)
        source = CredentialSource(credentials, frozen, self.reactor, self.threads)
        self.store.s3 = S3Client(location, source, reactor=self.reactor, run_in_thread=self.threads)
        self.log.info("files in {where}; catalog {catalog}", where=location.describe(),
                      catalog=self.store.catalog.where)
        self.reactor.callWhenRunning(self._start)

    def _start(self) -> None:
        def failed(failure: Failure) -> None:
            self.log.failure("the index could not be loaded from the catalog", failure)

        self.store.start().addErrback(failed)

    def stopService(self) -> Deferred[object]:
        super().stopService()  # type: ignore[no-untyped-call]  # as above
        return self.store.stop()
