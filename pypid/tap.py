"""
The twistd plugin's options and service: C{twistd pypid [options] [DIR ...]}.

Option names follow pypiserver's, so that its users can switch with the
commands they already have. Each concern brings its options as a mixin
that checks them into a frozen config (L{Config} holds them all), and
L{makeService} builds the parts from that config, top to bottom.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn, Optional

from twisted.application.service import IService, MultiService
from twisted.python import usage

from pypid import __version__
from pypid.auth.options import AuthConfig, AuthOptions, acl_file
from pypid.feed.audit import AuditLog
from pypid.feed.incoming import SpoolBudget
from pypid.feed.options import FeedConfig, FeedOptions, SpoolService, ftp_factory
from pypid.feed.publish import Publisher
from pypid.feed.yank import Yanker
from pypid.index.pages import PageCache
from pypid.ops import malloc
from pypid.ops.logs import LoggingService
from pypid.ops.metrics import Metrics
from pypid.ops.options import OpsConfig, OpsOptions, top_service, wire_metrics
from pypid.ops.startup import Listener, usage_exit
from pypid.ops.values import plain_help
from pypid.store.directory import options as directory
from pypid.store.directory.options import DirectoryConfig, DirectoryOptions
from pypid.store.interfaces import IPackageStore
from pypid.store.objectstore.options import ObjectStoreConfig, ObjectStoreOptions
from pypid.threads import pool_threads
from pypid.upstream import config as upstream
from pypid.upstream.config import FallbackConfig
from pypid.upstream.options import UpstreamOptions
from pypid.web.files import download_cache_control
from pypid.web.guard import Authenticator
from pypid.web.options import HttpConfig, WebOptions, announce, endpoint, guard
from pypid.web.proxy import TrustedProxies
from pypid.web.root import Root, WebConfig
from pypid.web.site import PypidSite
from pypid.web.upload import LegacyUpload, UploadPolicy
from pypid.web.yankapi import YankAPI


@dataclass(frozen=True)
class Config:
    """The whole command line, checked."""

    directory: DirectoryConfig
    auth: AuthConfig
    feed: FeedConfig
    #: The upstream fallback, L{None} without one.
    upstream: Optional[FallbackConfig]
    web: HttpConfig
    ops: OpsConfig
    #: The object store and catalog (C{--store}), L{None} for package directories.
    objectstore: Optional[ObjectStoreConfig] = None


class Options(DirectoryOptions, ObjectStoreOptions, AuthOptions, FeedOptions, UpstreamOptions, WebOptions,
              OpsOptions):
    """
    C{twistd pypid}'s options: each mixin brings one concern's options and
    its C{check_*} method; L{postOptions} checks them all into L{config}.
    """

    synopsis = "[options] [PACKAGE_DIR ...]"
    longdesc = (
        "Serve the distribution files in PACKAGE_DIR (default ~/packages) as a "
        "Python package index (simple repository API, HTML and JSON). Several "
        "directories may be given; the first receives uploads."
    )
    optFlags = [
        ["version", None, "Print pypid's version and exit."],
    ]
    #: How the command is spelled in messages (C{pypid serve} sets its own).
    command = "twistd pypid"

    #: The checked command line, set by L{postOptions}.
    config: Config

    def __init__(self) -> None:
        super().__init__()
        self.docs = plain_help(self.docs)

    def opt_version(self) -> None:
        print(f"pypid {__version__}")
        raise SystemExit(0)

    def parseOptions(self, options=None) -> None:
        if not hasattr(self, "raw_args"):
            #: The command line as given (what --workers gives its workers).
            self.raw_args = list(sys.argv[1:] if options is None else options)
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            self.usage_error(e)

    def usage_error(self, error: usage.UsageError) -> NoReturn:
        """
        Raise C{error}; when twistd (or C{pypid serve}) runs pypid, print it
        in one line with a hint instead, and exit 2.
        """
        if self.parent is None:
            raise error
        usage_exit(self.command, error)

    def postOptions(self) -> None:
        objectstore = self.check_objectstore()
        # With --store, what the other options call the package directory
        # is the local work directory (uploads on their way in, caches).
        directory_config = objectstore.directory if objectstore is not None else self.check_directory()
        auth = self.check_auth(directory_config.upload_root)
        self.config = Config(
            directory=directory_config,
            auth=auth,
            feed=self.check_feed(directory_config, auth),
            upstream=self.check_upstream(directory_config),
            web=self.check_web(),
            ops=self.check_ops(),
            objectstore=objectstore,
        )


def attach(parent: MultiService, name: str, service: IService) -> IService:
    """Make C{service} the child C{name} of C{parent}."""
    service.setName(name)
    service.setServiceParent(parent)
    return service


def makeService(options: Options, reactor=None) -> IService:
    """
    Build pypid's services from parsed options, named: C{heap}, C{index},
    C{watch}, C{spool}, C{upstream}, C{web-0}, C{web-1}, ..., C{ftp}. Nothing listens,
    reads the package directories or creates anything before they start.
    With C{--workers N} (N > 1), the supervisor of N worker processes
    instead (L{pypid.ops.workers}), each of which builds the above.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    if options.config.ops.workers > 1:
        return supervise(options, reactor)
    return build(options, reactor).top


def supervise(options: Options, reactor) -> IService:
    """The supervisor of C{--workers}: the sockets, the workers, their logs."""
    from pypid.ops.workers import LogRelay, WorkerPool

    config = options.config
    try:
        sockets = [(endpoint(reactor, "--port", d), d, "--port") for d in config.web.ports]
        if config.feed.ftp:
            sockets.append((endpoint(reactor, "--ftp", config.feed.ftp), config.feed.ftp, "--ftp"))
    except usage.UsageError as e:
        options.usage_error(e)
    top = top_service(config.ops, options.parent, reactor)
    spec = {
        "options": f"{type(options).__module__}:{type(options).__qualname__}",
        "args": list(getattr(options, "raw_args", ())),
        "log_format": config.ops.log_format,
    }
    pool = WorkerPool(config.ops.workers, sockets, spec, reactor, LogRelay(lambda: top.observer))
    attach(top, "workers", pool)
    return top


class Built(NamedTuple):
    """What L{build} made: the top service, and the parts a worker needs to reach."""

    top: LoggingService
    store: Any
    site: PypidSite


def build(options: Options, reactor, worker: Optional[dict] = None) -> Built:
    """
    pypid's services (see L{makeService}); in a worker of C{--workers}
    (C{worker}: what its supervisor said, L{pypid.worker}), listening on
    the sockets it was given.
    """
    config = options.config

    # What can still be refused: every endpoint is built once, now.
    try:
        if worker is None:
            web_endpoints = [endpoint(reactor, "--port", description) for description in config.web.ports]
            ftp_endpoint = endpoint(reactor, "--ftp", config.feed.ftp) if config.feed.ftp else None
        acl = acl_file(config.auth.acl, config.auth.owners) if config.auth.acl and config.auth.owners else None
    except usage.UsageError as e:
        options.usage_error(e)
    malloc.tune()
    top = top_service(config.ops, options.parent, reactor)

    # Blocking work (scans, archive checks, landing files) runs in the
    # reactor's bounded pool, through this one callable.
    threads = pool_threads(reactor)
    # What /metrics shows: every part that counts records into this one.
    metrics = Metrics()
    # The heap a burst of connections freed goes back to the system.
    trimmer = malloc.heap_trimmer(reactor, threads)
    if trimmer is not None:
        attach(top, "heap", trimmer)

    if config.objectstore is not None:
        # The object store and its catalog (replicas); the extra is imported only here.
        from pypid.store.objectstore import options as objectstore

        replica = objectstore.build(config.objectstore, reactor, threads)
        store: IPackageStore = replica.store
        attach(top, "index", replica.service)
    else:
        # The package directories: the store, its rescans and its watcher
        # (one worker writes the index image).
        parts = directory.build(config.directory, reactor, threads,
                                write_image=worker is None or worker["index"] == 0, metrics=metrics)
        store = parts.store
        if parts.watch is not None:
            attach(top, "watch", parts.watch)
        attach(top, "index", parts.index)
    pages = PageCache(store.snapshot, store.hash_algo, threads)
    store.subscribe(pages.update)
    wire_metrics(metrics, store)

    # Who may do what: the password checks of -P (their own thread pool, a
    # cache of recent successes, a limit on failed logins per client),
    # shared by HTTP and FTP.
    logins = None
    authenticator = None
    if config.auth.passwords is not None:
        from pypid.auth.logins import start_logins

        logins, passwords = start_logins(config.auth.passwords, reactor, config.auth.tokens)
        attach(top, "passwords", passwords)
        authenticator = Authenticator(logins)
        if logins.tokens is not None:
            from pypid.auth.tokens import TokenUses

            # Last-used times written in the reactor's pool (stopped after
            # the services, so the last write at stop gets done).
            attach(top, "tokens", TokenUses(logins.tokens, reactor, threads))

    if acl is not None and config.objectstore is not None:
        # First uploaders go in the catalog every replica shares.
        from pypid.store.objectstore.store import CatalogOwners

        acl.shared_owners = CatalogOwners(replica.store.catalog, reactor)

    # Uploads.
    root = config.directory.upload_root
    if config.feed.spool is not None:
        attach(top, "spool", SpoolService(config.feed.spool))
    # One publisher holds the upload rules for HTTP and FTP; one audit log
    # records every upload, removal and refusal.
    audit = AuditLog()
    rules = None
    if config.feed.no_filename_reuse or config.feed.one_sdist:
        from pypid.feed.rules import ReleaseRules, removed_names

        rules = ReleaseRules(store, threads, no_filename_reuse=config.feed.no_filename_reuse,
                             one_sdist=config.feed.one_sdist, removed=removed_names(root))
    publisher = Publisher(store, acl, audit, threads, overwrite=config.feed.overwrite, rules=rules,
                          metrics=metrics)
    # Uploads in flight, HTTP and FTP, share one budget of bytes.
    budget = SpoolBudget(config.feed.max_spool)
    policy = UploadPolicy(
        enabled=config.feed.uploads,
        authenticator=authenticator if "update" in config.auth.actions else None,
        budget=budget,
    )
    upload = LegacyUpload(publisher, policy, threads)
    # Yanks: the rights of uploads, the same audit log.
    yanks = YankAPI(Yanker(store, publisher.authorize, audit), policy, threads)

    # The upstream fallback.
    cache_control = download_cache_control(config.web.cache_control, private="download" in config.auth.actions)
    upstream_web = None
    if config.upstream is not None:
        upstream_web, upstream_service = upstream.build(config.upstream, store, reactor, cache_control,
                                                        threads=threads, metrics=metrics)
        if upstream_service is not None:
            attach(top, "upstream", upstream_service)
        if config.objectstore is not None and upstream_web.fallback is not None:
            # Replicas share what they fetch through the object store.
            from pypid.store.objectstore.upstream import SharedUpstreamFiles

            upstream_web.fallback.shared = SharedUpstreamFiles(store)

    # The web site, on every --port.
    metrics_files = None
    if worker is not None and config.web.metrics:
        # Every worker's metrics on /metrics, labelled.
        from pypid.ops.workers import MetricsFiles

        metrics_files = MetricsFiles(worker["run_dir"], worker["index"], metrics.registry, reactor)
    web = WebConfig(
        cache_control=cache_control,
        welcome_template=config.web.welcome_template,
        health_endpoint=config.web.health_endpoint.encode("ascii"),
        uploads=config.feed.uploads,
        metrics=config.web.metrics,
        metrics_allow=config.web.metrics_allow,
        metrics_source=metrics_files.render if metrics_files is not None else None,
        worker=worker["index"] if worker is not None else None,
    )
    protect = guard(config.auth.actions, authenticator)
    site = PypidSite(
        Root(store, pages, web, upload=upload, protect=protect,
             upstream=upstream_web, api=yanks, threads=threads, metrics=metrics),
        reactor=reactor,
        metrics=metrics,
        max_body_size=config.feed.max_upload_size,
        max_connections=config.web.max_connections,
        header_timeout=config.web.header_timeout,
        idle_timeout=config.web.idle_timeout,
    )
    if protect is None:
        # Reads are open: the commonest requests skip twisted.web's machinery.
        from pypid.web.fast import FastPath

        site.fast = FastPath(store, pages, cache_control, pages_too=upstream_web is None)
    site.trusted_proxies = TrustedProxies.parse(config.web.trusted_proxies)
    site.record_metrics = config.web.metrics
    site.access_log = config.ops.access_log
    site.access_sink = top.access
    site.audit = audit
    if worker is None:
        listeners = [attach(top, f"web-{i}", Listener(e, site)) for i, e in enumerate(web_endpoints)]
    else:
        from pypid.ops.workers import AdoptedListener

        listeners = [attach(top, f"web-{i}", AdoptedListener(reactor, fd, family, site, description))
                     for i, (fd, family, description) in enumerate(worker["ports"])]
        if metrics_files is not None:
            store.whenReady().addCallback(lambda _: metrics_files.start())

    # FTP uploads (with --workers, in worker 0).
    if worker is None and ftp_endpoint is not None or worker is not None and worker.get("ftp"):
        assert logins is not None
        factory = ftp_factory(config.feed, root, logins, publisher, reactor, threads, budget)
        if worker is None:
            attach(top, "ftp", Listener(ftp_endpoint, factory, "--ftp"))
        else:
            from pypid.ops.workers import AdoptedListener

            fd, family = worker["ftp"]
            attach(top, "ftp", AdoptedListener(reactor, fd, family, factory, config.feed.ftp or "", "--ftp"))

    if worker is None or worker["index"] == 0:
        announce(store, listeners, config.web.ports)
    return Built(top, store, site)
