"""
The twistd plugin's options and service: C{twistd pypid [options] [DIR ...]}.

Option names follow pypiserver's, so that its users can switch with the
commands they already have.
"""

from __future__ import annotations

import os
import re

from twisted.application import strports
from twisted.application.service import IService, MultiService, Service
from twisted.internet import endpoints
from twisted.python import usage

from pypid import __version__
from pypid.ops import malloc
from pypid.ops.options import OperationsOptions, top_service, wire_metrics
from pypid.auth.acl import AclError, AclFile
from pypid.feed.incoming import clean_stale, incoming_dir
from pypid.index.pages import PageCache
from pypid.store.directory.scan import HASH_ALGORITHMS
from pypid.store.directory.rescans import IndexService
from pypid.store.directory.store import DirectoryStore
from pypid.upstream import config as upstream_config
from pypid.counts import counted
from pypid.web import channel
from pypid.web.files import download_cache_control
from pypid.web.root import Root, WebConfig
from pypid.web.site import PypidSite

DEFAULT_PORT = "tcp:8080"
DEFAULT_MAX_UPLOAD = "1G"
#: What -a/--authenticate may list (pypiserver's names).
AUTH_ACTIONS = ("update", "download", "list")
_SIZE = re.compile(r"^(\d+)\s*([kmgt]?)(i?b)?$", re.IGNORECASE)
_HEALTH = re.compile(r"^/[a-z0-9/_-]+$", re.IGNORECASE)
_FALSE = ("0", "no", "off", "false", "n", "f")


def endpoint_description(value: str) -> str:
    """Turn a bare port number into C{tcp:N}; keep endpoint strings."""
    value = value.strip()
    return f"tcp:{value}" if value.isdigit() else value


class Options(OperationsOptions, usage.Options):
    synopsis = "[options] [PACKAGE_DIR ...]"
    longdesc = (
        "Serve the distribution files in PACKAGE_DIR (default ~/packages) as a "
        "Python package index (simple repository API, HTML and JSON). Several "
        "directories may be given; the first receives uploads."
    )

    optParameters = [
        ["hash-algo", None, "sha256",
         "Hash algorithm of file links: " + ", ".join(HASH_ALGORITHMS) + ", or off."],
        ["welcome", None, None,
         "HTML file to serve as the welcome page; {{URL}}, {{VERSION}}, "
         "{{NUMPKGS}}, {{PACKAGES}} and {{SIMPLE}} are filled in."],
        ["health-endpoint", None, "/health", "Path of the health endpoint."],
        ["cache-control", None, None,
         "Send 'Cache-Control: public, max-age=SECONDS' with package downloads."],
        ["rescan-interval", None, "300",
         "Seconds between full rescans of the package directories (0: never)."],
        ["passwords", "P", None,
         "htpasswd file of the users who may log in ('.': none, only with -a .)."],
        ["authenticate", "a", None,
         "Comma-separated actions that need a password: update (upload and remove), "
         "download, list ('.': none). Default: update; without -P the index is then read-only."],
        ["acl", None, None,
         "File saying which users may upload to which projects (needs -P and -a update)."],
        ["max-upload-size", None, DEFAULT_MAX_UPLOAD,
         "Largest request body accepted, e.g. 500M, 2G (bytes; K/M/G/T are powers of 1024)."],
        ["fallback-url", None, None,
         "Upstream simple index (e.g. https://index.example/simple/) for projects "
         "that are not local. No default: without it there is no fallback."],
        ["fallback-mode", None, "cache",
         "cache: fetch, cache and serve upstream pages and files; "
         "redirect: answer 303 to FALLBACK_URL/<project>/ (pypiserver's behaviour)."],
        ["cache-dir", None, None,
         "Directory of the upstream cache. Default: STATE_DIR/upstream, i.e. "
         "PACKAGE_DIR/.pypid/upstream in the first package directory (never listed)."],
        ["upstream-ttl", None, "600",
         "Seconds an upstream page is served before it is revalidated."],
        ["cache-max-size", None, None,
         "Size cap of the cached upstream files, e.g. 20G; least recently used go first."],
        ["upstream-timeout", None, "30",
         "Seconds to wait for the upstream's headers, and for each pause in a body."],
        ["upstream-ca", None, None,
         "PEM file of the CA to verify the upstream's TLS certificate with "
         "(default: the system's trust store)."],
        ["state-dir", None, None,
         "Directory of pypid's state (the cache of hashes and metadata). Default: "
         "PACKAGE_DIR/.pypid in the first package directory, or ~/.cache/pypid when "
         "that is not writable."],
        ["ftp", None, None,
         "Also accept uploads by FTP on this endpoint (e.g. tcp:2121), into the first "
         "package directory; logins are checked against -P/--passwords (required)."],
        ["max-connections", None, None,
         f"Most HTTP connections served at once (default {channel.MAX_CONNECTIONS}, or what the "
         "open-file limit allows: two files per connection). At the limit the connection idle "
         "the longest is closed, or, all being busy, a new one is answered 503 with Retry-After."],
        ["header-timeout", None, str(channel.HEADER_TIMEOUT),
         "Seconds for a request's whole head (request line and headers), from its first byte."],
        ["idle-timeout", None, str(channel.IDLE_TIMEOUT),
         "Seconds a connection may wait for a request, and a client may leave an answer unread."],
    ]
    optFlags = [
        ["overwrite", "o", "Allow uploads to replace existing files."],
        ["disable-fallback", None, "Never consult an upstream index, even with --fallback-url."],
        ["no-access-log", None,
         "Do not log a line per request (when a proxy in front logs them): "
         "about twice the small requests per second."],
        ["list-upstream", None, "List the upstream's projects on /simple/ too (off: the list can be huge)."],
        ["version", None, "Print pypid's version and exit."],
        ["no-watch", None,
         "Do not watch the package directories for changes (network filesystems); "
         "changes then show at the --rescan-interval rescans."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["ports"] = []
        self["packages"] = []
        self["upstream-allow"] = []
        self["upstream-deny"] = []

    def opt_port(self, value: str) -> None:
        """
        Endpoint to listen on, repeatable: a port number (tcp:N) or any
        Twisted endpoint string, e.g. tcp:3141:interface=127.0.0.1,
        ssl:8443:privateKey=key.pem:certKey=cert.pem, systemd:domain=INET:index=0.
        Default tcp:8080.
        """
        self["ports"].append(endpoint_description(value))

    opt_p = opt_port

    def opt_upstream_allow(self, value: str) -> None:
        """
        A local project whose upstream files are listed beside the local
        ones (repeatable; @FILE reads names, one a line). Every other local
        name hides the upstream project of that name entirely.
        """
        self["upstream-allow"].append(value)

    def opt_upstream_deny(self, value: str) -> None:
        """
        A project name or pattern (acme-*) reserved for local projects:
        never looked up upstream, 404 while there is no local file
        (repeatable; @FILE reads patterns, one a line).
        """
        self["upstream-deny"].append(value)

    def opt_packages(self, value: str) -> None:
        """A package directory (repeatable; the first receives uploads)."""
        self["packages"].append(value)

    def opt_version(self) -> None:
        print(f"pypid {__version__}")
        raise SystemExit(0)

    def parseArgs(self, *directories: str) -> None:
        self["packages"].extend(directories)

    def postOptions(self) -> None:
        if not self["ports"]:
            self["ports"] = [DEFAULT_PORT]
        self._check_directories()
        self._check_auth()
        self._check_uploads()
        self._check_hash_algo()
        self._check_numbers()
        self._check_connections()
        self.check_operations()
        self["fallback"] = upstream_config.check(self)
        if self["state-dir"] is not None:
            # Created when first used, after twistd has dropped privileges.
            self["state-dir"] = os.path.abspath(os.path.expanduser(self["state-dir"]))
        self._check_ftp()
        if not _HEALTH.match(self["health-endpoint"] or ""):
            raise usage.UsageError(
                f"--health-endpoint {self['health-endpoint']!r} must be a path like /health "
                "(letters, digits, '/', '_' and '-')."
            )
        welcome = self["welcome"]
        if welcome is not None:
            try:
                with open(welcome, encoding="utf-8") as f:
                    self["welcome-template"] = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise usage.UsageError(f"cannot read --welcome file {welcome!r}: {e}")
        else:
            self["welcome-template"] = None

    def _check_auth(self) -> None:
        """
        pypiserver's rules: C{-a .} (nothing needs a password) goes with
        C{-P .} (no password file) and only with it; C{-a update} without
        C{-P} is a read-only index. Reads protected without a password file
        could never be served, so that is refused.
        """
        raw = self["authenticate"]
        if raw is None:
            actions = {"update"}
        elif raw.strip() == ".":
            actions = set()
        else:
            actions = {a.strip().lower() for a in re.split(r"[,\s]+", raw) if a.strip()}
            unknown = actions - set(AUTH_ACTIONS)
            if unknown or not actions:
                raise usage.UsageError(
                    f"-a/--authenticate {raw!r}: list some of {', '.join(AUTH_ACTIONS)} "
                    "separated by commas, or '.' for none."
                )
        passwords = self["passwords"].strip() if self["passwords"] is not None else None
        if not actions and passwords != ".":
            raise usage.UsageError(
                "When nothing needs a password (-a .), the password file must be '.' too (-P .), "
                "as with pypiserver: anyone may then upload."
            )
        if actions and passwords == ".":
            raise usage.UsageError(
                "-P . (no password file) goes only with -a . (nothing needs a password)."
            )
        if passwords is None and actions - {"update"}:
            raise usage.UsageError(
                f"-a {','.join(sorted(actions))} protects reads, which needs -P/--passwords FILE."
            )
        if passwords not in (None, "."):
            path = os.path.abspath(os.path.expanduser(passwords))
            try:
                with open(path, "rb"):
                    pass
            except OSError as e:
                raise usage.UsageError(f"cannot read the password file {passwords!r}: {e.strerror}")
            self["passwords"] = path
        else:
            self["passwords"] = None
        self["auth-actions"] = frozenset(actions)
        # Uploads are open when 'update' needs no password, and need one
        # from the password file otherwise; -a update without -P: read-only.
        self["uploads"] = "update" not in actions or self["passwords"] is not None

    def _check_uploads(self) -> None:
        text = str(self["max-upload-size"]).strip()
        match = _SIZE.match(text)
        if not match or int(match.group(1)) <= 0:
            raise usage.UsageError(f"--max-upload-size {text!r} is not a size such as 500M or 2G.")
        self["max-upload-size"] = int(match.group(1)) * 1024 ** "bkmgt".index((match.group(2) or "b").lower())
        self["spool"] = None
        if self["uploads"]:
            from pypid.feed.incoming import INCOMING

            # Only checked here: the directory is made when the service
            # starts, after twistd has dropped privileges.
            root = self["packages"][0]
            spool = os.path.join(root, INCOMING)
            if not os.access(spool if os.path.isdir(spool) else root, os.W_OK | os.X_OK):
                raise usage.UsageError(
                    f"uploads go to {root!r}, but it is not writable; make it writable "
                    "or run read-only (no -P, default -a update)."
                )
            self["spool"] = spool
        self["acl-file"] = None
        if self["acl"] is not None:
            if self["passwords"] is None or "update" not in self["auth-actions"]:
                raise usage.UsageError("--acl needs users: give -P/--passwords FILE with -a update.")
            try:
                self["acl-file"] = AclFile(
                    self["acl"], os.path.join(self["packages"][0], ".pypid-owners")
                )
            except AclError as e:
                raise usage.UsageError(str(e))

    def _check_directories(self) -> None:
        if not self["packages"]:
            self["packages"] = [os.path.expanduser("~/packages")]
        roots = []
        for directory in self["packages"]:
            path = os.path.abspath(os.path.expanduser(directory))
            if not os.path.isdir(path):
                raise usage.UsageError(f"package directory {directory!r} does not exist or is not a directory.")
            if not os.access(path, os.R_OK | os.X_OK):
                raise usage.UsageError(f"package directory {directory!r} is not readable.")
            if path not in roots:
                roots.append(path)
        self["packages"] = roots

    def _check_hash_algo(self) -> None:
        algo = (self["hash-algo"] or "").strip().lower()
        if algo in _FALSE:
            self["hash-algo"] = None
        elif algo in HASH_ALGORITHMS:
            self["hash-algo"] = algo
        else:
            raise usage.UsageError(
                f"--hash-algo {self['hash-algo']!r} is not one of "
                + ", ".join(HASH_ALGORITHMS) + " or off (the ones both pip and uv accept)."
            )

    def _check_numbers(self) -> None:
        for name in ("cache-control", "rescan-interval"):
            value = self[name]
            if value is None:
                continue
            try:
                number = int(value)
                if number < 0:
                    raise ValueError
            except ValueError:
                raise usage.UsageError(f"--{name} must be a whole number of seconds, not {value!r}.")
            self[name] = number

    def _check_connections(self) -> None:
        """--max-connections against the open-file limit; the timeouts."""
        import resource

        try:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        except OSError:  # a seccomp filter may refuse even to tell
            hard = resource.RLIM_INFINITY
        room = None if hard == resource.RLIM_INFINITY else channel.connections_for(hard)
        value = self["max-connections"]
        if value is None:
            self["max-connections"] = channel.MAX_CONNECTIONS if room is None else min(channel.MAX_CONNECTIONS, room)
        else:
            try:
                number = int(value)
                if number < 1:
                    raise ValueError
            except ValueError:
                raise usage.UsageError(f"--max-connections must be a whole number of connections, not {value!r}.")
            if room is not None and number > room:
                raise usage.UsageError(
                    f"--max-connections {number} needs {channel.files_needed(number)} open files, over the "
                    f"hard limit of {hard} (LimitNOFILE= in a systemd unit, ulimit -Hn in a shell); "
                    f"at most {counted(room, 'connection')} fit."
                )
            self["max-connections"] = number
        for name in ("header-timeout", "idle-timeout"):
            value = self[name]
            try:
                seconds = float(value)
                if not 0 < seconds < 86400:
                    raise ValueError
            except (TypeError, ValueError):
                raise usage.UsageError(f"--{name} must be a number of seconds above 0, not {value!r}.")
            self[name] = seconds

    def _check_ftp(self) -> None:
        if self["ftp"] is None:
            return
        self["ftp"] = endpoint_description(self["ftp"])
        if self["passwords"] is None or self["spool"] is None:
            raise usage.UsageError(
                "--ftp needs -P/--passwords FILE: FTP logins are checked against it "
                "(there is no anonymous FTP)."
            )

    def check_endpoints(self, reactor) -> None:
        """Build every endpoint once, so a bad description fails at start."""
        for option, description in [("--port", d) for d in self["ports"]] + (
            [("--ftp", self["ftp"])] if self["ftp"] else []
        ):
            try:
                endpoints.serverFromString(reactor, description)
            except (ValueError, IndexError, TypeError, KeyError, OSError) as e:
                raise usage.UsageError(f"{option} {description!r} is not a usable endpoint: {e}")


def makeService(options: Options, reactor=None) -> IService:
    """Build pypid's services from parsed options."""
    if reactor is None:
        from twisted.internet import reactor  # type: ignore[no-redef]
    options.check_endpoints(reactor)
    malloc.tune()
    top = top_service(options, reactor)
    store = _store(options, reactor, top)
    pages = PageCache(store.snapshot, store.hash_algo)
    store.subscribe(pages.update)
    cache_control = download_cache_control(
        options["cache-control"], private="download" in options["auth-actions"]
    )
    config = WebConfig(
        cache_control=cache_control,
        welcome_template=options["welcome-template"],
        health_endpoint=options["health-endpoint"].encode("ascii"),
        uploads=options["uploads"],
        metrics=options["metrics"],
        metrics_allow=tuple(options["metrics-allow"]),
    )
    upload, protect = _access(options, store, reactor, top)
    upstream = upstream_config.build(options["fallback"], store, reactor, top, cache_control)
    site = PypidSite(
        Root(store, pages, config, upload=upload, protect=protect, upstream=upstream),
        reactor=reactor,
        max_body_size=options["max-upload-size"],
        spool_dir=options["spool"],
        max_connections=options["max-connections"],
        header_timeout=options["header-timeout"],
        idle_timeout=options["idle-timeout"],
    )
    site.trusted_proxies = options["trusted-proxies"]
    site.record_metrics = options["metrics"]
    site.access_log = not options["no-access-log"]
    site.access_sink = top.access
    wire_metrics(store)
    for description in options["ports"]:
        strports.service(description, site, reactor=reactor).setServiceParent(top)
    if options["ftp"]:
        _ftp(options, store, reactor).setServiceParent(top)
    return top


def _ftp(options: Options, store, reactor) -> IService:
    """The FTP upload server of --ftp, with the logins of -P."""
    from pypid.auth.htpasswd import HtpasswdChecker
    from pypid.feed.ftp import FTPUploads, ftp_factory

    uploads = FTPUploads(
        store=store,
        root=options["packages"][0],
        spool=options["spool"],
        reactor=reactor,
        overwrite=options["overwrite"],
        max_size=options["max-upload-size"],
        acl=options["acl-file"],
    )
    factory = ftp_factory(uploads, HtpasswdChecker(options["passwords"], reactor))
    return strports.service(options["ftp"], factory, reactor=reactor)


def _store(options: Options, reactor, top: MultiService) -> DirectoryStore:
    """The store with its state cache, the watcher and the rescans feeding it."""
    from pypid.store.directory.statecache import StateCache, default_state_dirs
    from pypid.store.directory.watch import FALLBACK_POLL, WatchService

    roots = options["packages"]
    state_dirs = [options["state-dir"]] if options["state-dir"] else default_state_dirs(roots[0])
    store = DirectoryStore(roots, options["hash-algo"], reactor, StateCache(state_dirs))
    interval = options["rescan-interval"]
    watching = None
    if not options["no-watch"]:
        poll = min(FALLBACK_POLL, interval) if interval else FALLBACK_POLL
        watcher = WatchService(store, roots, reactor, fallback_poll=poll)
        watcher.setServiceParent(top)
        watching = watcher.whenWatching
    IndexService(store, reactor, interval, first_scan_after=watching).setServiceParent(top)
    return store


class SpoolService(Service):
    """Makes the upload spool directory and clears what a crash left there."""

    def __init__(self, path: str) -> None:
        self.path = path

    def startService(self) -> None:
        super().startService()
        incoming_dir(os.path.dirname(self.path))
        clean_stale(self.path)


def _access(options: Options, store, reactor, top):
    """The upload resource and the wrapper protecting reads, from -P/-a/--acl."""
    from pypid.auth.htpasswd import HtpasswdChecker
    from pypid.web.guard import Authenticator, Guard, is_listing
    from pypid.web.upload import LegacyUpload, UploadPolicy

    actions = options["auth-actions"]
    authenticator = None
    if options["passwords"] is not None:
        authenticator = Authenticator(HtpasswdChecker(options["passwords"], reactor))
    if options["spool"] is not None:
        SpoolService(options["spool"]).setServiceParent(top)
    policy = UploadPolicy(
        enabled=options["uploads"],
        authenticator=authenticator if "update" in actions else None,
        acl=options["acl-file"],
        overwrite=options["overwrite"],
    )
    upload = LegacyUpload(store, options["packages"][0], options["spool"], policy, reactor)
    if authenticator is None or not actions & {"download", "list"}:
        return upload, None

    def protect(name: bytes, child):
        if name == b"+upstream":
            return Guard(child, authenticator, lambda postpath: "download" in actions)
        if name == b"packages":
            return Guard(child, authenticator,
                         lambda postpath: ("list" if is_listing(postpath) else "download") in actions)
        if "list" in actions:
            return Guard(child, authenticator)
        return child

    return upload, protect
